"""Staff notation (labkit.score): MusicXML by music21, SVG by Verovio, counted by hand on tiny melodies."""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from labkit.errors import ConfigError, LabkitError, MidiReadError, NoNotesError
from labkit.melody import Melody, melody_to_sequence
from labkit.midi_io import write_midi
from labkit.score import Score, melody_musicxml, melody_score, parts_score, show_score

# D major, 3/4, 4 steps per quarter (a bar is 12 steps):
#   bar 1: D4 quarter, F#4 quarter, A4 quarter tied to    bar 2: A4 eighth, G4 dotted quarter, quarter rest
TUNE = Melody.from_notes([62, 66, 69, 67], [0, 4, 8, 14], [4, 8, 14, 20], key=2, mode="major",
                         numerator=3, denominator=4, source="tune")


def _classes(svg: str, name: str) -> int:
    """How many SVG elements carry the class ``name`` (Verovio's: note, notehead, measure, rest, ...)."""
    root = ET.fromstring(svg)
    return sum(1 for el in root.iter() if name in (el.get("class") or "").split())


def _rest_types(xml: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"<rest[^>]*/>\s*<duration>\d+</duration>\s*<type>(\w+)</type>", xml)]


def test_svg_parses_with_the_note_heads_and_bars_counted_by_hand():
    svg = melody_score(TUNE)
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # 4 notes, the A split by the bar line into two tied heads: 5 heads; 1 tie; 2 bars; 1 rest
    assert _classes(svg, "notehead") == 5
    assert _classes(svg, "tie") == 1
    assert _classes(svg, "measure") == 2
    assert _classes(svg, "rest") == 1
    xml = melody_musicxml(TUNE)
    assert xml.count("<measure ") == 2 and xml.count("<pitch>") == 5
    assert xml.count('<tie type="start" />') == 1
    assert re.findall(r"<type>(\w+)</type>", xml) == ["quarter", "quarter", "quarter", "eighth", "quarter", "quarter"]
    assert xml.count("<dot />") == 1  # the G: a dotted quarter


def test_time_signature_and_key_are_in_the_musicxml():
    xml = melody_musicxml(TUNE)
    assert "<beats>3</beats>" in xml and "<beat-type>4</beat-type>" in xml
    assert "<fifths>2</fifths>" in xml and "<mode>major</mode>" in xml  # D major: two sharps
    # overridden: Bb minor has five flats; (9, "minor") is A minor, none
    xml = melody_musicxml(TUNE, meter="6/8", key="Bb minor")
    assert "<beats>6</beats>" in xml and "<beat-type>8</beat-type>" in xml
    assert "<fifths>-5</fifths>" in xml and "<mode>minor</mode>" in xml
    xml = melody_musicxml(TUNE, meter=(2, 2), key=(9, "minor"))
    assert "<beats>2</beats>" in xml and "<fifths>0</fifths>" in xml and "<mode>minor</mode>" in xml
    # a melody's own key in flats is spelled with the usual signature: pitch class 10 major is Bb (two flats)
    assert "<fifths>-2</fifths>" in melody_musicxml(TUNE.replace(key=10))


def test_black_keys_are_spelled_as_the_key_asks():
    def steps(xml):
        return re.findall(r"<step>(\w)</step>\s*(?:<alter>(-?\d)</alter>)?", xml)

    m = Melody.from_notes([62, 61, 62, 70], [0, 4, 8, 12], [4, 8, 12, 16], key=2, mode="minor")
    # D minor: the leading tone is C sharp, the sixth B flat (in the signature: no accidental printed)
    assert steps(melody_musicxml(m)) == [("D", ""), ("C", "1"), ("D", ""), ("B", "-1")]
    # the same pitches in E major: C# is in the scale, D natural is not (alter 0: a natural sign),
    # and 70 is A# (sharp keys spell sharps)
    assert steps(melody_musicxml(m, key="E major")) == [("D", "0"), ("C", "1"), ("D", "0"), ("A", "1")]


def test_rests_fill_bars_with_plain_values():
    # one sixteenth in 4/4, then silence to the end of bar 1, a silent bar 2 and a note in bar 3
    m = Melody.from_notes([60, 67], [0, 32], [1, 48])
    xml = melody_musicxml(m)
    assert xml.count("<measure ") == 3
    assert _rest_types(xml)[:3] == ["16th", "eighth", "quarter"]  # then the half: never a triple-dotted rest
    assert xml.count('<rest measure="yes" />') == 1  # bar 2: one whole-bar rest
    assert "<dot />" not in xml


def test_bars_keeps_only_the_first_bars():
    long = Melody.from_notes(list(range(60, 76)), list(range(0, 64, 4)), list(range(4, 68, 4)))  # 16 quarters
    assert melody_musicxml(long).count("<measure ") == 4
    xml = melody_musicxml(long, bars=2)
    assert xml.count("<measure ") == 2 and xml.count("<pitch>") == 8
    score = show_score(long, bars=1)
    assert _classes(score.svg, "measure") == 1 and _classes(score.svg, "notehead") == 4 and score.pages == 1
    # a note crossing the end is cut there: C dotted half, then D from the last quarter of bar 1 on
    cut = melody_musicxml(Melody.from_notes([60, 62], [0, 12], [12, 28]), bars=1)
    assert re.findall(r"<type>(\w+)</type>", cut) == ["half", "quarter"] and "<tie " not in cut
    assert cut.count("<dot />") == 1
    # more bars than the melody has: only its own (no empty bars added)
    assert melody_musicxml(long, bars=9) == melody_musicxml(long)


def test_same_input_same_output_in_a_fresh_process():
    svg, xml = melody_score(TUNE, title="Tune"), melody_musicxml(TUNE, title="Tune")
    assert melody_score(TUNE, title="Tune") == svg and melody_musicxml(TUNE, title="Tune") == xml
    code = ("import hashlib; from labkit.melody import Melody; from labkit.score import melody_score; "
            "m = Melody.from_notes([62, 66, 69, 67], [0, 4, 8, 14], [4, 8, 14, 20], key=2, numerator=3, "
            "denominator=4); print(hashlib.sha256(melody_score(m, title='Tune').encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == hashlib.sha256(svg.encode()).hexdigest()
    assert "Tune" in svg and "Music21" not in xml and "encoding-date" not in xml


def test_a_sequence_or_a_midi_file_gives_the_same_score(tmp_path):
    xml = melody_musicxml(TUNE)
    assert melody_musicxml(melody_to_sequence(TUNE)) == xml
    path = write_midi(melody_to_sequence(TUNE), tmp_path / "tune.mid")
    assert melody_musicxml(path) == xml and melody_musicxml(str(path)) == xml


def test_score_object_shows_itself_in_a_notebook():
    score = show_score(TUNE)
    assert isinstance(score, Score) and score._repr_svg_() == score.svg == str(score) == melody_score(TUNE)
    assert score.musicxml == melody_musicxml(TUNE) and score.pages == 1
    assert 'width="880px"' in score.svg


def test_a_low_melody_gets_the_bass_clef():
    low = Melody.from_notes([40, 43, 45, 47], [0, 4, 8, 12], [4, 8, 12, 16])
    assert "<sign>F</sign>" in melody_musicxml(low) and "<sign>G</sign>" in melody_musicxml(TUNE)


@pytest.mark.parametrize("bad, kwargs, error, words", [
    (Melody([-2, -2, -1]), {}, NoNotesError, "no notes"),
    (Melody.from_notes([], [], []), {}, NoNotesError, "no notes"),
    (TUNE, {"meter": "5/3"}, ConfigError, "time signature"),
    (TUNE, {"meter": (0, 4)}, ConfigError, "time signature"),
    (TUNE, {"key": "H major"}, ConfigError, "key name"),
    (TUNE, {"key": (2, "dorian")}, ConfigError, "is not a key"),
    (TUNE, {"bars": 0}, ConfigError, "bars"),
    ([60, 62], {}, ConfigError, "needs a labkit.melody.Melody"),
])
def test_bad_input_is_one_line(bad, kwargs, error, words):
    with pytest.raises(error) as info:
        melody_score(bad, **kwargs)
    assert isinstance(info.value, LabkitError) and words in str(info.value) and "\n" not in str(info.value)


def test_an_unreadable_file_is_one_line(tmp_path):
    path = tmp_path / "song.mid"
    path.write_bytes(b"RIFF not a midi file")
    with pytest.raises(MidiReadError) as info:
        melody_score(path)
    assert "song.mid" in str(info.value) and "\n" not in str(info.value)


# --- several parts ------------------------------------------------------------------------------
# A cadence in G major, 4/4, 4 steps per quarter (a bar is 16 steps), four voices:
#   S: B4 A4 quarters, G4 half (3 heads)       A: G4 half, F#4 D4 quarters (3 heads)
#   T: B3 A3 halves (2 heads)                   B: G2 D3 quarters, G2 from step 8 to 20: a half tied over the
#   bar line to a quarter (4 heads); bar 2: S, A, T a whole-bar rest each, B a quarter rest then a half rest.
G_MAJOR = dict(key=7, mode="major")
SATB = [Melody.from_notes([71, 69, 67], [0, 4, 8], [4, 8, 16], **G_MAJOR),
        Melody.from_notes([67, 66, 62], [0, 8, 12], [8, 12, 16], **G_MAJOR),
        Melody.from_notes([59, 57], [0, 8], [8, 16], **G_MAJOR),
        Melody.from_notes([43, 50, 43], [0, 4, 8], [4, 8, 20], **G_MAJOR)]
VOICES = ["Soprano", "Alto", "Tenor", "Bass"]


def _satb_sequence():
    """The cadence as one NoteSequence, instrument i = voice i, named."""
    sequence = melody_to_sequence(SATB[0])
    del sequence.notes[:]
    for i, (melody, name) in enumerate(zip(SATB, VOICES)):
        sequence.instrument_infos.add(instrument=i, name=name)
        for note in melody_to_sequence(melody).notes:
            note.instrument = i
            sequence.notes.append(note)
    return sequence


def test_four_parts_counted_by_hand():
    score = parts_score(SATB, names=VOICES, title="Cadence")
    svg, xml = score.svg, score.musicxml
    ET.fromstring(svg)
    assert score.pages == 1 and 'width="880px"' in svg and "Cadence" in svg
    # 4 staves x 2 bars; 3 + 3 + 2 + 4 note heads; the bass's tie; 3 whole-bar rests and the bass's 2
    assert xml.count("<part ") == 4 and _classes(svg, "staff") == 8 and _classes(svg, "measure") == 2
    assert _classes(svg, "notehead") == 12 and xml.count("<pitch>") == 12
    assert _classes(svg, "tie") == 1 and _classes(svg, "mRest") == 3 and _classes(svg, "rest") == 2
    assert xml.count('<rest measure="yes" />') == 3 and xml.count("<measure ") == 8
    # ids fixed, names printed, a bracket, the choir's clefs: G, G, G an octave down, F
    assert re.findall(r'<part id="(\w+)"', xml) == ["P1", "P2", "P3", "P4"]
    assert re.findall(r"<part-name>(\w+)</part-name>", xml) == VOICES and _classes(svg, "label") == 4
    assert "<group-symbol>bracket</group-symbol>" in xml
    assert re.findall(r"<sign>(\w)</sign>\s*<line>\d</line>\s*(<clef-octave-change>-1)?", xml) == [
        ("G", ""), ("G", ""), ("G", "<clef-octave-change>-1"), ("F", "")]
    # without names: no labels, clefs by range (the tenor's B3, A3 read in the bass clef)
    plain = parts_score(SATB[2:])
    assert "<part-name>" not in plain.musicxml.replace("<part-name />", "") and _classes(plain.svg, "label") == 0
    assert re.findall(r"<sign>(\w)</sign>", plain.musicxml) == ["F", "F"]


def test_key_and_time_are_in_every_part():
    xml = parts_score(SATB).musicxml
    assert xml.count("<fifths>1</fifths>") == 4 and xml.count("<beats>4</beats>") == 4  # G major, 4/4: the first part's
    xml = parts_score(SATB, meter="3/4", key="Eb major").musicxml
    assert xml.count("<fifths>-3</fifths>") == 4 and xml.count("<beats>3</beats>") == 4
    assert xml.count("<measure ") == 4 * 2                      # 20 steps in bars of 12: 2 bars each
    # bars cuts every staff: one bar, the bass's G2 cut at the bar line (no tie)
    one = parts_score(SATB, bars=1)
    assert one.musicxml.count("<measure ") == 4 and _classes(one.svg, "notehead") == 3 + 3 + 2 + 3
    assert "<tie " not in one.musicxml
    assert parts_score(SATB, bars=5) == parts_score(SATB)      # at most: the 2 bars there are


def test_a_harmonized_sequence_a_midi_file_and_a_setting_give_the_score(tmp_path):
    from labkit.polyphony.harmony import ChoraleSetting, bar_positions, paint_voice

    by_list = parts_score(SATB, names=VOICES).musicxml
    sequence = _satb_sequence()
    assert parts_score(sequence).musicxml == by_list          # names from the sequence's instruments
    path = write_midi(sequence, tmp_path / "harmonized.mid")
    from_file = parts_score(path).musicxml
    assert from_file.count("<part ") == 4 and from_file.count("<pitch>") == 12
    assert re.findall(r"<part-name>(\w+)</part-name>", from_file) == VOICES     # the MIDI file's track names
    # a setting on its eighth grid (3/4: a bar is 6 frames), 10 frames; the alto repeats its G4 (an onset: a
    # second head, not one held note). Heads by hand: S B4 A4 G4, the G4 (frames 4-8) tied over the bar
    # line: 4; A G4 G4 F#4 tied: 4; T B3, A3 tied: 3; B G2 D3 G2 (4-10) tied: 4. 15 heads, 4 ties.
    notes = [([71, 69, 67], [0, 2, 4], [2, 4, 8]), ([67, 67, 66], [0, 2, 4], [2, 4, 8]), ([59, 57], [0, 4], [4, 8]),
             ([43, 50, 43], [0, 2, 4], [2, 4, 10])]
    voices, onsets = zip(*(paint_voice(p, s, e, 10) for p, s, e in notes))
    setting = ChoraleSetting("cadence", np.stack(voices), np.stack(onsets), bar_positions(10, 6), (7, "major"))
    score = parts_score(setting)
    assert re.findall(r"<part-name>(\w+)</part-name>", score.musicxml) == VOICES
    assert score.musicxml.count("<beats>3</beats>") == 4       # bars of 6 eighths: 3/4
    assert score.musicxml.count("<fifths>1</fifths>") == 4
    assert _classes(score.svg, "notehead") == 4 + 4 + 3 + 4 and _classes(score.svg, "tie") == 4
    # a church mode is written with its relative major's signature: D dorian has none (C major's), A dorian
    # one sharp (G major's)
    for tonic, fifths in ((2, 0), (9, 1)):
        dorian = ChoraleSetting("d", setting.voices, setting.onsets, setting.bar_position, (tonic, "dorian"))
        assert parts_score(dorian).musicxml.count(f"<fifths>{fifths}</fifths>") == 4


def test_parts_same_input_same_output_in_a_fresh_process():
    score = parts_score(SATB, names=VOICES, title="Cadence")
    again = parts_score(SATB, names=VOICES, title="Cadence")
    assert again == score
    code = ("import hashlib; from tests.test_score import SATB, VOICES; from labkit.score import parts_score; "
            "print(hashlib.sha256(parts_score(SATB, names=VOICES, title='Cadence').svg.encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == hashlib.sha256(score.svg.encode()).hexdigest()


@pytest.mark.parametrize("bad, kwargs, error, words", [
    ([], {}, NoNotesError, "no parts"),
    ([SATB[0], SATB[3].replace(steps_per_quarter=2)], {}, ConfigError, "part 2 has 2 steps per quarter"),
    ([SATB[0], Melody([-2, -2])], {"names": ["S", "B"]}, NoNotesError, "part 2 (B) has no notes"),
    (SATB, {"names": ["S", "A"]}, ConfigError, "one string per part (4)"),
    ([SATB[0], [60, 62]], {}, ConfigError, "not list"),
    (42, {}, ConfigError, "a score of parts needs"),
    (SATB, {"meter": "7/5"}, ConfigError, "time signature"),
    (SATB, {"bars": -1}, ConfigError, "bars"),
])
def test_parts_bad_input_is_one_line(bad, kwargs, error, words):
    with pytest.raises(error) as info:
        parts_score(bad, **kwargs)
    assert isinstance(info.value, LabkitError) and words in str(info.value) and "\n" not in str(info.value)
