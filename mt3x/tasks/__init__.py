"""mt3x.tasks: the MT3 example chain and its drivers.

  examples            per-example numpy functions of the chain (tokenize, split, random chunk,
                      ties, program granularity, run-length shifts, mixing, EOS, eval segments);
                      imports neither TensorFlow, JAX nor seqio, for any driver (tf.data, Grain)
  counters            counts of dropped tracks / examples, shared by the drivers
  codec               PipelineCodec: a vocabulary preset as the chain uses it (no TF)
  preprocessors       seqio / tf.data stages over `examples`
  feature_converters  seqio feature converter to the model's batch keys
  sources             seqio DataSources over Slakh-layout folders and in-memory tracks
  vocab               seqio vocabulary over the codec (model id = codec id + 3)
  registry            seqio task / mixture registration and numpy batch iterators

Nothing is imported here: import the submodule you need.
"""
