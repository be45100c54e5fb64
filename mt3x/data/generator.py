"""A seeded procedural multi-instrument music generator (pretty_midi parts of a `sources.Piece`).

One seed gives one piece: a key and mode, a meter (3/4, 4/4, 6/8, 5/4), a tempo (60-200 quarter
notes per minute), a chord progression with one or two chords a bar, and 2-6 parts chosen from
these roles, each with its own style, register, articulation (staccato to legato) and dynamics
(a velocity curve of crescendi and diminuendi plus accents):

- bass: roots, root-fifth, walking eighths or repeated octave pulses;
- chords: block chords (sustained or comping) in a mid register;
- arpeggio: broken chords in eighths, triplets or sixteenths, up, down or up-down;
- melody / counter: phrases in the scale with steps, leaps, repeated notes and fast runs, over
  ranges up to three octaves, with rests between phrases and repeated motifs;
- drums: a groove for the meter (kick, snare, hi-hat or ride, fills every fourth bar).

With `ensemble_probability` > 0 a piece is instead, with that chance, an ensemble texture: 3 or 4
melodic voices of equal standing (no bass pattern, no chords) in overlapping soprano / alto /
tenor / bass ranges, as in a string quartet or a chorale, each drawn like a melody.

Parts carry a program hint (bass parts a bass program, so Slakh-style draws keep their class) and
their role as name. Piece ids are `generated:<seed>`; `generate_piece(seed, seconds)` is pure.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pretty_midi

from mt3x.data.sources import Part, Piece

METERS: tuple[tuple[int, int], ...] = ((4, 4), (3, 4), (6, 8), (5, 4))
METER_WEIGHTS = (0.45, 0.2, 0.2, 0.15)
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Progressions as 0-based scale degrees.
PROGRESSIONS: tuple[tuple[int, ...], ...] = (
    (0, 4, 5, 3), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 4, 0), (5, 3, 0, 4), (0, 3, 0, 4, 0, 3, 4, 0),
    (0, 6, 5, 4), (0, 2, 3, 4), (0, 5, 1, 4), (0, 0, 3, 3, 0, 0, 4, 3),
)
ROLE_HINTS = {"bass": 33, "chords": 0, "arpeggio": 24, "melody": 73, "counter": 40, "drums": 0,
              "voice": 0}
#: Bounds of the lowest MIDI pitch of each ensemble voice's range (soprano, alto, tenor, bass),
#: and the range widths (semitones) drawn per voice: neighbouring ranges overlap unless the upper
#: voice's low and the lower voice's width are both drawn at their extremes.
ENSEMBLE_LOWS = ((60, 67), (53, 60), (45, 53), (36, 45))
ENSEMBLE_WIDTHS = (12, 15, 19)
KICK, SNARE, CLOSED_HAT, OPEN_HAT, RIDE, CRASH, LOW_TOM, HIGH_TOM = 36, 38, 42, 46, 51, 49, 45, 50


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Ranges the generator draws from.

    Attributes:
      seconds: length of each piece in seconds (notes are cut there).
      tempo_bpm: (low, high) quarter notes per minute.
      drums_probability: chance that a piece has a drum part.
      max_parts: most pitched parts (2..5).
      ensemble_probability: chance that a piece is an ensemble of 3-4 equal melodic voices
        instead of bass + accompaniment + melodies (0: never, and the random draws of every
        piece are those of a generator without the option).
    """

    seconds: float = 30.0
    tempo_bpm: tuple[float, float] = (60.0, 200.0)
    drums_probability: float = 0.7
    max_parts: int = 5
    ensemble_probability: float = 0.0


@dataclasses.dataclass
class _Context:
    rng: np.random.Generator
    beat: float            # seconds per quarter note
    bar: float             # seconds per bar
    beats_per_bar: float   # in quarter notes
    pulse: float           # seconds per counted pulse (quarter; dotted quarter in 6/8)
    tonic: int             # pitch class 0..11
    scale: tuple[int, ...]
    chords: list[tuple[float, float, int]]  # (start s, end s, scale degree)
    seconds: float


def _scale_pitch(ctx: _Context, degree: int, octave_base: int) -> int:
    octave, step = divmod(degree, 7)
    return octave_base + 12 * octave + ctx.tonic + ctx.scale[step]


def _triad(ctx: _Context, degree: int, base: int) -> list[int]:
    return [_scale_pitch(ctx, degree + k, base) for k in (0, 2, 4)]


def _dynamics(ctx: _Context, base: float) -> "callable":
    """A velocity curve: base +- a slow sine (crescendo/diminuendo) + accents + jitter."""
    rng = ctx.rng
    period = float(rng.uniform(4.0, 16.0)) * ctx.bar
    phase = float(rng.uniform(0, 2 * np.pi))
    depth = float(rng.uniform(5, 30))
    accent = float(rng.uniform(0, 15))

    def velocity(t: float) -> int:
        on_bar = abs((t / ctx.bar) - round(t / ctx.bar)) < 1e-3
        v = base + depth * np.sin(2 * np.pi * t / period + phase) + (accent if on_bar else 0.0)
        return int(np.clip(v + rng.normal(0, 4), 20, 127))

    return velocity


def _articulation(rng: np.random.Generator) -> float:
    """Fraction of the notated length that sounds: staccato 0.3-0.5 to legato 0.95-1.05."""
    kind = int(rng.choice(3, p=[0.25, 0.45, 0.3]))
    return float(rng.uniform(*((0.3, 0.5), (0.7, 0.9), (0.95, 1.05))[kind]))


def _add(inst: pretty_midi.Instrument, ctx: _Context, pitch: int, start: float, length: float,
         velocity: int) -> None:
    if start >= ctx.seconds or length <= 0.02:
        return
    pitch = int(np.clip(pitch, 0, 127))
    inst.notes.append(pretty_midi.Note(int(velocity), pitch, start, min(start + length, ctx.seconds)))


def _bass(ctx: _Context, inst: pretty_midi.Instrument) -> None:
    rng = ctx.rng
    style = ["roots", "root-fifth", "walking", "pulses"][int(rng.integers(4))]
    base = int(rng.choice([28, 33, 36]))
    legato = _articulation(rng)
    vel = _dynamics(ctx, float(rng.uniform(70, 105)))
    for start, end, degree in ctx.chords:
        root = _scale_pitch(ctx, degree % 7, base)
        if style == "roots":
            _add(inst, ctx, root, start, (end - start) * legato, vel(start))
        elif style == "root-fifth":
            half = (end - start) / 2
            _add(inst, ctx, root, start, half * legato, vel(start))
            _add(inst, ctx, _scale_pitch(ctx, degree % 7 + 4, base), start + half, half * legato, vel(start + half))
        else:
            step = ctx.beat / 2 if style == "pulses" else ctx.beat
            t, k = start, 0
            while t < end - 1e-6:
                if style == "pulses":
                    pitch = root + (12 if k % 2 and rng.uniform() < 0.4 else 0)
                else:
                    pitch = _scale_pitch(ctx, degree % 7 + int(rng.choice([0, 1, 2, 4, -1])), base)
                _add(inst, ctx, pitch, t, step * legato, vel(t))
                t, k = t + step, k + 1


def _chords(ctx: _Context, inst: pretty_midi.Instrument) -> None:
    rng = ctx.rng
    base = int(rng.choice([48, 55, 60]))
    comping = rng.uniform() < 0.5
    legato = _articulation(rng)
    vel = _dynamics(ctx, float(rng.uniform(55, 95)))
    rhythm = [0.0, 1.5, 2.5] if ctx.beats_per_bar >= 4 else [0.0, 1.0, 2.0]
    for start, end, degree in ctx.chords:
        pitches = _triad(ctx, degree % 7, base)
        if rng.uniform() < 0.3:
            pitches.append(pitches[0] + 12)
        onsets = [start + r * ctx.beat for r in rhythm if start + r * ctx.beat < end] if comping else [start]
        for i, t in enumerate(onsets):
            nxt = onsets[i + 1] if i + 1 < len(onsets) else end
            for p in pitches:
                _add(inst, ctx, p, t, (nxt - t) * legato, vel(t))


def _arpeggio(ctx: _Context, inst: pretty_midi.Instrument) -> None:
    rng = ctx.rng
    base = int(rng.choice([48, 55, 60, 67]))
    step = ctx.beat / float(rng.choice([2, 3, 4]))
    shape = ["up", "down", "updown"][int(rng.integers(3))]
    span = int(rng.integers(3, 8))
    legato = _articulation(rng)
    vel = _dynamics(ctx, float(rng.uniform(50, 90)))
    for start, end, degree in ctx.chords:
        tones = [_scale_pitch(ctx, degree % 7 + 2 * k, base) for k in range(span)]
        order = {"up": tones, "down": tones[::-1], "updown": tones + tones[-2:0:-1]}[shape]
        t, k = start, 0
        while t < end - 1e-6:
            _add(inst, ctx, order[k % len(order)], t, step * legato, vel(t))
            t, k = t + step, k + 1


def _melody(ctx: _Context, inst: pretty_midi.Instrument, low: int, high: int) -> None:
    """Phrases of steps, leaps, repeated notes and fast runs within [low, high], motif repeats."""
    rng = ctx.rng
    legato = _articulation(rng)
    vel = _dynamics(ctx, float(rng.uniform(65, 110)))
    scale_pcs = {(ctx.tonic + s) % 12 for s in ctx.scale}
    pitches = [p for p in range(low, high + 1) if p % 12 in scale_pcs]
    index = len(pitches) // 2
    durations = np.array([0.25, 0.5, 0.75, 1.0, 1.5, 2.0]) * ctx.beat
    t, motif, phrase_end = 0.0, [], 0.0
    while t < ctx.seconds:
        if t >= phrase_end:  # a new phrase, sometimes repeating the last motif, after a rest
            t += float(rng.choice([0.0, 0.5, 1.0, 2.0])) * ctx.beat
            phrase_end = t + float(rng.choice([2, 4])) * ctx.bar
            if motif and rng.uniform() < 0.4:
                shift = int(rng.choice([0, 2, -2, 4]))
                for pitch_index, offset, length in motif:
                    i = int(np.clip(pitch_index + shift, 0, len(pitches) - 1))
                    _add(inst, ctx, pitches[i], t + offset, length * legato, vel(t + offset))
                t += max(o + d for _, o, d in motif)
                continue
            motif, motif_start = [], t
        figure = float(rng.uniform())
        if figure < 0.12:  # a fast run
            n, d = int(rng.integers(4, 9)), ctx.beat / float(rng.choice([4, 3, 2]))
            direction = int(rng.choice([-1, 1]))
            for _ in range(n):
                index = int(np.clip(index + direction, 0, len(pitches) - 1))
                _add(inst, ctx, pitches[index], t, d * 0.9, vel(t))
                t += d
            continue
        if figure < 0.22:  # repeated notes
            n, d = int(rng.integers(2, 6)), ctx.beat / float(rng.choice([2, 4]))
            for _ in range(n):
                _add(inst, ctx, pitches[index], t, d * 0.6, vel(t))
                t += d
            continue
        move = int(rng.choice([-1, 1, -2, 2, 0, -3, 3, -5, 5, 7, -7],
                              p=[.2, .2, .12, .12, .08, .07, .07, .05, .05, .02, .02]))
        index = int(np.clip(index + move, 0, len(pitches) - 1))
        length = float(rng.choice(durations))
        _add(inst, ctx, pitches[index], t, length * legato, vel(t))
        if len(motif) < 8 and t - motif_start < 2 * ctx.bar:
            motif.append((index, t - motif_start, length))
        t += length


def drum_groove(seconds: float, tempo_bpm: float, meter: tuple[int, int], rng: np.random.Generator
                ) -> pretty_midi.Instrument:
    """A drum part for `seconds`: kick/snare pattern per meter, hats or ride, fills every 4th bar."""
    beat = 60.0 / tempo_bpm
    num, den = meter
    pulse = beat * (1.5 if den == 8 else 1.0)
    pulses = num // 3 if den == 8 else num
    bar = pulses * pulse
    inst = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    cymbal = RIDE if rng.uniform() < 0.3 else CLOSED_HAT
    subdivision = int(rng.choice([2, 4])) if tempo_bpm < 130 else 2
    swing = float(rng.uniform(0.0, 0.1))
    vel = lambda lo, hi: int(rng.integers(lo, hi))  # noqa: E731
    t_bar, k = 0.0, 0
    while t_bar < seconds:
        fill = k % 4 == 3 and rng.uniform() < 0.6
        for p in range(pulses):
            t = t_bar + p * pulse
            if p == 0 or (pulses >= 4 and p == 2) or (pulses == 5 and p == 3 and rng.uniform() < 0.5):
                inst.notes.append(pretty_midi.Note(vel(90, 125), KICK, t, t + 0.1))
            if (pulses >= 2 and p % 2 == 1) or (pulses == 3 and p == 2):
                inst.notes.append(pretty_midi.Note(vel(85, 120), SNARE, t, t + 0.1))
            for s in range(subdivision):
                ts = t + (s + (swing if s % 2 else 0.0)) * pulse / subdivision
                inst.notes.append(pretty_midi.Note(vel(50, 90), cymbal, ts, ts + 0.05))
        if fill:
            n = 4 * int(rng.integers(1, 3))
            for j in range(n):
                tf = t_bar + bar - (n - j) * pulse / 4
                inst.notes.append(pretty_midi.Note(vel(80, 120), (SNARE, HIGH_TOM, LOW_TOM)[j % 3], tf, tf + 0.08))
        if k % 8 == 0:
            inst.notes.append(pretty_midi.Note(vel(90, 120), CRASH, t_bar, t_bar + 0.5))
        t_bar, k = t_bar + bar, k + 1
    inst.notes = sorted((n for n in inst.notes if n.start < seconds), key=lambda n: (n.start, n.pitch))
    for note in inst.notes:
        note.end = min(note.end, seconds)
    return inst


def generate_piece(seed: int, config: GeneratorConfig = GeneratorConfig()) -> Piece:
    """One piece of `config.seconds` seconds from `seed` (same seed -> same notes)."""
    rng = np.random.default_rng([int(seed), 0x6E4E])
    meter = METERS[int(rng.choice(len(METERS), p=METER_WEIGHTS))]
    tempo = float(np.round(rng.uniform(*config.tempo_bpm), 1))
    beat = 60.0 / tempo
    beats_per_bar = meter[0] * 4.0 / meter[1]
    bar = beats_per_bar * beat
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    per_bar = 2 if (rng.uniform() < 0.3 and meter[0] in (4, 6)) else 1
    chords, t, i = [], 0.0, 0
    while t < config.seconds:
        length = bar / per_bar
        chords.append((t, t + length, progression[i % len(progression)]))
        t, i = t + length, i + 1
    ctx = _Context(rng=rng, beat=beat, bar=bar, beats_per_bar=beats_per_bar,
                   pulse=beat * (1.5 if meter[1] == 8 else 1.0), tonic=int(rng.integers(12)),
                   scale=_MAJOR if rng.uniform() < 0.6 else _MINOR, chords=chords, seconds=config.seconds)
    if config.ensemble_probability > 0 and rng.uniform() < config.ensemble_probability:
        parts = _ensemble(ctx)
    else:
        parts = _roles(ctx, config)
    if rng.uniform() < config.drums_probability:
        parts.append(Part(name="drums", instrument=drum_groove(config.seconds, tempo, meter, rng)))
    return Piece(piece_id=f"generated:{int(seed)}", parts=parts, tempo_bpm=tempo)


def _ensemble(ctx: _Context) -> list[Part]:
    """3 or 4 legato-to-detached melodic voices in overlapping SATB ranges (top voice first)."""
    rng = ctx.rng
    voices = ENSEMBLE_LOWS if rng.uniform() < 0.5 else ENSEMBLE_LOWS[:3]
    parts = []
    for k, (low_min, low_max) in enumerate(voices):
        inst = pretty_midi.Instrument(program=ROLE_HINTS["voice"], name=f"voice{k + 1}")
        low = int(rng.integers(low_min, low_max + 1))
        _melody(ctx, inst, low, low + int(rng.choice(ENSEMBLE_WIDTHS)))
        inst.notes.sort(key=lambda n: (n.start, n.pitch))
        if inst.notes:
            parts.append(Part(name=f"voice{k + 1}", instrument=inst))
    return parts


def _roles(ctx: _Context, config: GeneratorConfig) -> list[Part]:
    """A bass (90 % of pieces) and 1..max_parts-1 of chords, arpeggio, melody and counter."""
    rng = ctx.rng
    roles = ["bass"] if rng.uniform() < 0.9 else []
    extra = ["chords", "arpeggio", "melody", "counter"]
    count = int(rng.integers(max(1, 2 - len(roles)), max(2, config.max_parts - len(roles)) + 1))
    roles += [extra[int(k)] for k in rng.choice(len(extra), size=min(count, len(extra)), replace=False)]
    parts = []
    for role in roles:
        inst = pretty_midi.Instrument(program=ROLE_HINTS[role], name=role)
        if role == "bass":
            _bass(ctx, inst)
        elif role == "chords":
            _chords(ctx, inst)
        elif role == "arpeggio":
            _arpeggio(ctx, inst)
        else:
            low = int(rng.integers(55, 72)) if role == "melody" else int(rng.integers(43, 60))
            _melody(ctx, inst, low, low + int(rng.choice([12, 19, 24, 36])))
        inst.notes.sort(key=lambda n: (n.start, n.pitch))
        if inst.notes:
            parts.append(Part(name=role, instrument=inst))
    return parts


def piece_seed(build_seed: int, index: int) -> int:
    """The generator seed of the `index`-th generated piece of a build (31-bit)."""
    return int(np.random.default_rng([int(build_seed), int(index), 0x6E5]).integers(2**31))
