"""to_srt / to_vtt: cue sources, grouping limits, timestamp formats, the no-timings case."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.models import Segment, Transcript, Usage, Word
from tasks.subtitles import MAX_CUE_CHARS, MAX_CUE_SECONDS, NoTimingsError, cues, to_srt, to_vtt

SEGMENTED = Transcript(
    text="Hello world. How are you?",
    segments=(
        Segment("Hello world.", 0.08, 0.9),
        Segment("How are you?", 1.2, 3661.5),
    ),
)


def test_srt_from_segments() -> None:
    assert to_srt(SEGMENTED) == (
        "1\n00:00:00,080 --> 00:00:00,900\nHello world.\n"
        "\n"
        "2\n00:00:01,200 --> 01:01:01,500\nHow are you?\n"
    )


def test_vtt_from_segments() -> None:
    assert to_vtt(SEGMENTED) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.080 --> 00:00:00.900\nHello world.\n"
        "\n"
        "00:00:01.200 --> 01:01:01.500\nHow are you?\n"
    )


def test_speakers() -> None:
    transcript = Transcript(
        "Hi. Hello.", segments=(Segment("Hi.", 0, 1, "A"), Segment("Hello.", 1, 2, "B"))
    )
    assert "\nA: Hi.\n" in to_srt(transcript)
    assert "\n<v B>Hello.\n" in to_vtt(transcript)


def test_segment_text_is_one_clean_line() -> None:
    transcript = Transcript("x", segments=(Segment("  two\n\nlines  ", 0, 1), Segment("   ", 1, 2)))
    assert to_srt(transcript) == "1\n00:00:00,000 --> 00:00:01,000\ntwo lines\n"


def test_vtt_escapes_markup_and_arrows() -> None:
    transcript = Transcript("x", segments=(Segment("a <b> & c --> d", 0, 1),))
    assert to_vtt(transcript).endswith("\na &lt;b&gt; &amp; c --&gt; d\n")


def test_segments_are_sorted_and_times_clamped() -> None:
    transcript = Transcript(
        "x",
        segments=(
            Segment("second", 5.0, 6.0),
            Segment("first", -1.0, 2.0),
            Segment("odd", 7.0, 6.5),
        ),
    )
    assert [(c.start, c.end, c.text) for c in cues(transcript)] == [
        (0.0, 2.0, "first"),
        (5.0, 6.0, "second"),
        (7.0, 7.0, "odd"),
    ]


def _words(texts: list[str], step: float = 0.5) -> tuple[Word, ...]:
    return tuple(Word(t, i * step, i * step + step, None) for i, t in enumerate(texts))


def test_words_are_grouped_by_length() -> None:
    words = _words(["abcdefghij"] * 9)  # 10 chars each: 3 fit in 42 (32 chars), 4 do not (43)
    grouped = cues(Transcript("x", words=words))
    assert [c.text.count("abcdefghij") for c in grouped] == [3, 3, 3]
    assert (grouped[1].start, grouped[1].end) == (1.5, 3.0)


def test_words_are_grouped_by_duration() -> None:
    words = _words(["a"] * 10, step=2.0)  # 2 s per word: 3 words span 6 s, 4 would span 8 s
    grouped = cues(Transcript("x", words=words))
    assert [c.text for c in grouped] == ["a a a", "a a a", "a a a", "a"]


def test_speaker_change_starts_a_cue() -> None:
    words = (Word("hi", 0, 0.5, None, "0"), Word("yo", 0.5, 1.0, None, "1"))
    assert to_srt(Transcript("hi yo", words=words)) == (
        "1\n00:00:00,000 --> 00:00:00,500\n0: hi\n\n2\n00:00:00,500 --> 00:00:01,000\n1: yo\n"
    )


@given(
    st.lists(
        st.tuples(st.text(alphabet="abcdefg", min_size=1, max_size=12), st.floats(0.05, 3.0)),
        min_size=1,
        max_size=60,
    )
)
def test_word_cues_respect_the_limits_and_keep_every_word(spec: list[tuple[str, float]]) -> None:
    words, t = [], 0.0
    for text, length in spec:
        words.append(Word(text, t, t + length))
        t += length
    grouped = cues(Transcript("x", words=tuple(words)))
    assert " ".join(c.text for c in grouped) == " ".join(w.text for w in words)
    for cue in grouped:
        if " " in cue.text:  # a single word is allowed to break the limits alone
            assert len(cue.text) <= MAX_CUE_CHARS
            assert cue.end - cue.start <= MAX_CUE_SECONDS + 1e-9


def test_long_segment_is_recut_from_its_words() -> None:
    # A 12-word utterance over 12 s: too long for one cue, so its words are grouped.
    words = tuple(Word(f"w{i:02d}", 10.0 + i, 11.0 + i) for i in range(12))
    transcript = Transcript(
        "x",
        words=(Word("before", 0.0, 1.0), *words),
        segments=(Segment("short one", 0.0, 1.0, "A"), Segment("long", 10.0, 22.0, "B")),
    )
    got = [(c.start, c.end, c.text, c.speaker) for c in cues(transcript)]
    assert got == [
        (0.0, 1.0, "short one", "A"),  # fits: the segment's own text, not its words
        (10.0, 17.0, "w00 w01 w02 w03 w04 w05 w06", "B"),
        (17.0, 22.0, "w07 w08 w09 w10 w11", "B"),
    ]


def test_long_segment_without_words_stays_whole() -> None:
    transcript = Transcript("x", segments=(Segment("a very long monologue " * 10, 0.0, 60.0),))
    [cue] = cues(transcript)
    assert (cue.start, cue.end) == (0.0, 60.0)


def test_text_only_with_duration_is_one_cue() -> None:
    transcript = Transcript("Just text.", usage=Usage(audio_seconds=12.3456))
    assert to_srt(transcript) == "1\n00:00:00,000 --> 00:00:12,346\nJust text.\n"
    billed = Transcript("Just text.", usage=Usage(billed_seconds=4.0))
    assert to_vtt(billed) == "WEBVTT\n\n00:00:00.000 --> 00:00:04.000\nJust text.\n"


def test_text_only_without_timings_says_so() -> None:
    transcript = Transcript(
        "He doesn't belong to you.", usage=Usage(input_tokens=100, output_tokens=37)
    )
    with pytest.raises(NoTimingsError, match="no word or segment timings"):
        to_srt(transcript)
    with pytest.raises(ValueError):  # the CLI catches ValueError
        to_vtt(transcript)


def test_empty_transcript_has_no_cues() -> None:
    assert to_srt(Transcript("")) == ""
    assert to_vtt(Transcript("  ")) == "WEBVTT\n"


@given(st.floats(min_value=0, max_value=360_000, allow_nan=False))
def test_timestamp_formats(seconds: float) -> None:
    srt = to_srt(Transcript("x", usage=Usage(audio_seconds=seconds + 0.001)))
    vtt = to_vtt(Transcript("x", usage=Usage(audio_seconds=seconds + 0.001)))
    assert re.search(r"^00:00:00,000 --> \d{2,}:[0-5]\d:[0-5]\d,\d{3}$", srt, re.M)
    assert re.search(r"^00:00:00\.000 --> \d{2,}:[0-5]\d:[0-5]\d\.\d{3}$", vtt, re.M)
