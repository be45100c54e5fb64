"""mt3x.transcription: audio -> segments -> batched decoding -> notes -> MIDI / piano roll / stems;
evaluation of a checkpoint; metrics. Nothing is imported here, so importing a runtime module never
pulls in the model code.

Model-free runtime (shared by checkpoints and `mt3x.bundles.mt3_runtime`; imports no
mt3x.models / mt3x.trainer / flax / orbax / optax / tensorflow / seqio):
  errors        TranscriptionError
  segments      check_audio, segment_frames, Segments, audio_to_segments   (numpy)
  batching      decode_in_batches: segments -> tokens in fixed-size batches
  notes         tokens_to_notes, Transcription, transcribe_waveforms (any decode function)
  files         FileTranscription, transcribe_files: audio files -> MIDI / PNG / stems (any
                transcriber)
  midi_output   write_midi, note_sequence_to_pretty_midi, plot_notes
  pianoroll     match_tracks, plot_transcription (estimate vs reference)
  resynthesis   render_stems (soundfont stems of the transcribed instruments)
  metrics       transcription_metrics, average_metrics, format_table (MT3's metrics)
Checkpoint side (imports mt3x.models and mt3x.trainer):
  checkpoint    model spec json, resolve_checkpoint, load_model_and_params, check_vocab,
                replace_model
  decoder       SegmentDecoder (jitted predict on a Partitioner), Transcriber, load_transcriber
  evaluation    TranscriptionEvaluator (trainer evaluator), EvalFile, dataset_eval_files
                (a dataset split's files, numpy chain; seqio's are in mt3x.runs.seqio_input)
"""
