"""How a change to a Python function's parameters carries over to its call sites.

    sig = signature_change("def load(path, mode):", "def load(path, mode, encoding):")
    call_site_edits(text, sig)  # [(start, end, "p, 'r', encoding"), ...] character ranges of argument lists

The edit changed one ``def`` header (one line each side, parsed with :mod:`ast`). Each call
of that function in the file (found in the tree-sitter syntax tree) has its arguments bound
to the old parameters as Python would bind them, then is written again for the new ones:

* a removed parameter's argument goes (positional or keyword);
* a renamed parameter (same place, another name) keeps its value; ``old=`` becomes ``new=``;
* a new parameter without a default gets its own name as the argument (``f(a)`` ->
  ``f(a, encoding)``): the value the caller must supply, named as the function names it; a
  new parameter with a default needs nothing;
* an argument keeps its form (positional stays positional while the order allows).

A call that already passes the new parameters is not rewritten again (:func:`updated`).
Only calls that surely mean this function: a plain function's bare calls ``load(...)``; a
method's (first parameter ``self``/``cls``) calls through ``self.``/``cls.``. Calls with
``*args``/``**kwargs``, or whose arguments do not bind to the old parameters, are left alone,
and so is every call whose arguments come out the same.

It knows Python function headers and tree-sitter call nodes; nothing of diffs, models or LSP.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from . import ts

_HEADER = re.compile(r"\s*(?:async\s+)?def\s+(\w+)\s*\(")


@dataclass(frozen=True)
class Signature:
    name: str
    positional: tuple[str, ...]  # positional-or-keyword (and positional-only) parameters, in order
    required: frozenset[str]  # parameters without a default
    keyword_only: tuple[str, ...]
    varargs: bool  # *args
    varkw: bool  # **kwargs

    @property
    def is_method(self) -> bool:
        return bool(self.positional) and self.positional[0] in ("self", "cls")


@dataclass(frozen=True)
class SignatureChange:
    old: Signature
    new: Signature
    renamed: dict[str, str]  # old parameter name -> new, for a parameter renamed in place


def parse_header(line: str) -> Signature | None:
    """The signature of a one-line ``def`` header; None when ``line`` is not one."""
    if not _HEADER.match(line):
        return None
    try:
        fn = ast.parse(line.strip() + "\n    pass\n").body[0]
    except SyntaxError:
        return None
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    a = fn.args
    pos = [p.arg for p in a.posonlyargs + a.args]
    required = set(pos[: len(pos) - len(a.defaults)])
    required |= {p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is None}
    return Signature(
        fn.name, tuple(pos), frozenset(required), tuple(p.arg for p in a.kwonlyargs), a.vararg is not None,
        a.kwarg is not None,
    )  # fmt: skip


def signature_change(removed: str, added: str) -> SignatureChange | None:
    """The change between two headers of one function; None when they are not that.

    Headers whose parameters are the same (an annotation or a default's value changed) give a
    change that no call needs to follow.
    """
    old, new = parse_header(removed), parse_header(added)
    if old is None or new is None or old.name != new.name:
        return None
    renamed = {}
    if len(old.positional) == len(new.positional):
        diff = [(o, n) for o, n in zip(old.positional, new.positional) if o != n]
        if len(diff) == 1:
            renamed = dict(diff)
    return SignatureChange(old, new, renamed)


def binds(sig: Signature, args: list[tuple[str, str | None]], bound: bool) -> bool:
    """``args`` are a valid call of ``sig``: every required parameter gets one value, none is left over."""
    slots = sig.positional[1 if bound else 0 :]
    got: set[str] = set()
    for i, _ in enumerate(a for a in args if a[1] is None):
        if i >= len(slots):
            if not sig.varargs:
                return False
        else:
            got.add(slots[i])
    for _, key in args:
        if key is None:
            continue
        if key in got or not (key in slots or key in sig.keyword_only or sig.varkw):
            return False
        got.add(key)
    return sig.required - set(sig.positional[:1] if bound else ()) <= got  # (self is passed by the call)


def updated(change: SignatureChange, args: list[tuple[str, str | None]], bound: bool) -> bool:
    """The call already passes what the new signature added: each new required parameter by keyword
    or, at its place, by its own name (what :func:`rewrite_arguments` writes), and it fits the new
    signature. Such a call is not rewritten again (the rule stays idempotent when the edit history
    still shows the header change after its call-site edits were accepted)."""
    old, new = change.old, change.new
    known = set(old.positional) | set(old.keyword_only) | set(change.renamed.values())
    added = [p for p in (*new.positional, *new.keyword_only) if p in new.required and p not in known]
    if not added or not binds(new, args, bound):
        return False
    slots = new.positional[1 if bound else 0 :]
    positional = [v for v, k in args if k is None]
    keywords = {k for _, k in args if k is not None}
    return all(p in keywords or (p in slots and slots.index(p) < len(positional) and positional[slots.index(p)] == p)
               for p in added)  # fmt: skip


def rewrite_arguments(change: SignatureChange, args: list[tuple[str, str | None]], bound: bool) -> str | None:
    """The argument list for the new signature, from ``args`` for the old one; None when it cannot be told.

    ``args``: (value text, keyword or None) in call order. ``bound``: the call passes ``self``
    implicitly (a method called through an attribute).
    """
    old, new = change.old, change.new
    skip = 1 if bound else 0
    slots = old.positional[skip:]
    values: dict[str, tuple[str, bool]] = {}  # parameter -> (value text, passed positionally)
    extra: list[tuple[str, str]] = []  # keywords old did not name (into **kwargs): kept
    n_pos = 0
    for value, key in args:
        if key is None:
            if any(not was_pos for _, was_pos in values.values()) or n_pos >= len(slots):
                return None  # positional after keyword, or into *args
            values[slots[n_pos]] = (value, True)
            n_pos += 1
        elif key in old.positional[skip:] or key in old.keyword_only:
            values[key] = (value, False)
        elif old.varkw:
            extra.append((key, value))
        else:
            return None  # does not bind: not a call of this function as we know it
    for o, n in change.renamed.items():
        if o in values:
            values[n] = values.pop(o)
    out: list[str] = []
    positional_ok = True
    for p in new.positional[skip:]:
        if p in values:
            value, was_positional = values.pop(p)
            if was_positional and positional_ok:
                out.append(value)
            else:
                positional_ok = False
                out.append(f"{p}={value}")
        elif p in new.required:
            out.append(p if positional_ok else f"{p}={p}")  # new and required: the caller must pass it
        else:
            positional_ok = False  # a default fills it; what follows goes by keyword
    for p in new.keyword_only:
        if p in values:
            out.append(f"{p}={values.pop(p)[0]}")
        elif p in new.required:
            out.append(f"{p}={p}")
    out += [f"{k}={v}" for k, v in extra]
    return ", ".join(out)


def call_site_edits(text: str, change: SignatureChange, tree=None) -> list[tuple[int, int, str]]:
    """(start, end, new argument text) for every one-line call of the changed function whose arguments change.

    Ranges are character offsets of the text between the call's parentheses. ``tree``: the
    tree-sitter tree of ``text`` when the caller has one (else it is parsed here).
    """
    if tree is None:
        from .document import ParsedDocument

        tree = ParsedDocument(text, language="python").tree
    if tree is None:
        return []
    src = text.encode("utf-8")

    def chars(b: int) -> int:
        return len(src[:b].decode("utf-8", "replace"))

    def node_text(n) -> str:
        return src[n.start_byte : n.end_byte].decode("utf-8", "replace")

    method = change.old.is_method
    out = []
    for node in ts.walk(tree.root_node):
        if node.type != "call":
            continue
        fn, arglist = node.child_by_field_name("function"), node.child_by_field_name("arguments")
        if fn is None or arglist is None or arglist.type != "argument_list":
            continue
        callee = node_text(fn)
        if callee != (f"self.{change.old.name}" if method else change.old.name) and not (
            method and callee == f"cls.{change.old.name}"
        ):
            continue
        a, b = chars(arglist.start_byte + 1), chars(arglist.end_byte - 1)
        if "\n" in text[a:b]:
            continue
        args: list[tuple[str, str | None]] = []
        for ch in arglist.named_children:
            if ch.type == "comment":
                continue
            if ch.type in ("list_splat", "dictionary_splat", "parenthesized_list_splat"):
                args = []
                break
            if ch.type == "keyword_argument":
                key, value = ch.child_by_field_name("name"), ch.child_by_field_name("value")
                if key is None or value is None:
                    break
                args.append((node_text(value), node_text(key)))
            else:
                args.append((node_text(ch), None))
        else:
            if updated(change, args, bound=method):
                continue
            new = rewrite_arguments(change, args, bound=method)
            if new is not None and new != ", ".join(v if k is None else f"{k}={v}" for v, k in args):
                out.append((a, b, new))
    return sorted(out)
