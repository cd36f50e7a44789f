#!/usr/bin/env python3
"""Generates the raw declarations of the Rust and Julia bindings from the C
headers, as bindgen and Clang.jl do.

The public headers (include/fwp/fwp.h and every header it includes) are read
with the parser of scripts/check_bindings.py: #defines with integer values,
typedef'd enums, opaque handles, typedef aliases, function-pointer typedefs,
structs and FWP_API functions. From them this script writes

  * bindings/rust/fwp-sys/src/generated.rs: `c_enum!` newtypes, `opaque!`
    handles, `#[repr(C)]` structs, constants and one `extern "C"` block (the
    macros and the crate docs stay in the hand-written lib.rs), and
  * bindings/julia/src/LibFwp.jl: the whole raw module, one `@ccall` per C
    function,

each declaration carrying the \\brief text of its Doxygen comment (or, for
struct fields and enumerators, their trailing `/**< ... */` comment). The
output is checked in; `--check` compares it with a fresh generation and fails
(exit status 1, with a diff) when they differ, which the test suite runs
(ctest label `bindings`). The safe layers (the `fwp` crate, FastWeights.jl)
stay hand-written.

Usage: gen_bindings.py [--root DIR] [--check]
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_bindings import Header, read_public_headers, strip_c_comments  # noqa: E402

RUST_OUT = "bindings/rust/fwp-sys/src/generated.rs"
JULIA_OUT = "bindings/julia/src/LibFwp.jl"

# ----------------------------------------------------------------------------
# The header, with names kept and documentation attached
# ----------------------------------------------------------------------------


class NamedHeader(Header):
    """The parser of check_bindings.py, except that types keep the names the
    header uses: an alias of a struct type (`fwp_retrieval_data`) stays that
    alias, and a function-pointer typedef is ("fnptr", name)."""

    def ctype(self, decl: str):
        saved = self.aliases
        # Aliases of enums and scalars are resolved (their ABI is the target's);
        # aliases of handle types keep their own name.
        self.aliases = {k: v for k, v in saved.items() if self._alias_target(k, saved) in self.enums}
        try:
            t = super().ctype(decl)
        finally:
            self.aliases = saved
        base = [w for w in decl.replace("*", " ").split() if w not in ("const", "struct", "enum")][0]
        return _replace_fnptr(t, base)

    @staticmethod
    def _alias_target(name: str, aliases: dict) -> str:
        seen = set()
        while name in aliases and name not in seen:
            seen.add(name)
            name = aliases[name]
        return name


def _replace_fnptr(t, name):
    if t == ("fnptr",):
        return ("fnptr", name)
    if t[0] == "ptr":
        return ("ptr", t[1], _replace_fnptr(t[2], name))
    return t


def clean_doc(text: str) -> str:
    """Doxygen comment text -> one plain paragraph: the \\brief if there is one."""
    text = re.sub(r"^/\*\*<?|\*/$", "", text.strip())
    lines = [re.sub(r"^\s*\*(?!/) ?", "", line) for line in text.split("\n")]
    text = "\n".join(lines).strip()
    m = re.search(r"[\\@]brief\s+(.*)", text, re.S)
    if m:
        text = m.group(1)
    # Up to the next block command or the end of the first paragraph.
    text = re.split(r"[\\@](?:param|return|returns|retval|note|pre|post|warning|see|sa|details|code|file|defgroup)\b"
                    r"|\n\s*\n", text)[0]
    text = re.sub(r"(?<!\w)::(\w)", r"\1", text)  # Doxygen links to types: ::fwp_model (not a::b)
    return " ".join(text.split())


@dataclass
class Doc:
    """Documentation found in the raw (commented) header text."""

    raw: str

    def before(self, pattern: str) -> str:
        """The doc comment that ends right before the first match of `pattern`."""
        m = re.search(pattern, self.raw)
        if not m:
            return ""
        head = self.raw[: m.start()].rstrip()
        if not head.endswith("*/"):
            return ""
        start = head.rfind("/**")
        if start < 0 or "*/" in head[start:-2]:
            return ""
        comment = head[start:]
        if comment.startswith("/**<"):
            return ""  # a trailing comment of the previous item
        return clean_doc(comment)

    def trailing(self, body: str, pattern: str) -> str:
        """The `/**< ... */` comment after the first match of `pattern` in `body`."""
        m = re.search(pattern, body)
        if not m:
            return ""
        rest = body[m.end():]
        cm = re.match(r"\s*,?\s*(/\*\*<.*?\*/)", rest, re.S)
        return clean_doc(cm.group(1)) if cm else ""

    def block(self, pattern: str) -> str:
        """The raw text of the braced body that follows `pattern`."""
        m = re.search(pattern, self.raw)
        if not m:
            return ""
        depth, i = 1, m.end()
        while i < len(self.raw) and depth:
            depth += {"{": 1, "}": -1}.get(self.raw[i], 0)
            i += 1
        return self.raw[m.end(): i - 1]


@dataclass
class Typedef:
    kind: str  # "opaque", "alias", "fnptr"
    name: str
    target: str = ""  # alias target
    ret: tuple = ()  # fnptr
    params: tuple = ()  # fnptr: ((name, type), ...)
    doc: str = ""


class Api:
    """Everything the generators write, in header order, with docs."""

    def __init__(self, header_path: Path):
        self.h = NamedHeader(header_path)
        if self.h.api.errors:
            raise SystemExit("gen_bindings: the header could not be parsed:\n  " + "\n  ".join(self.h.api.errors))
        raw = read_public_headers(header_path)
        self.doc = Doc(raw)
        text = self.h.text  # comments and preprocessor lines removed, line structure kept

        # #defines: value, the expression (over other defines) and doc.
        self.defines = []  # (name, value, expr, doc)
        for line in strip_c_comments(raw).split("\n"):
            m = re.match(r"\s*#\s*define\s+(FWP_[A-Z0-9_]+)\s+(.+?)\s*$", line)
            if m and m.group(1) in self.h.defines:
                name = m.group(1)
                expr = " ".join(m.group(2).split())
                if expr.startswith("(") and expr.endswith(")") and _balanced(expr[1:-1]):
                    expr = expr[1:-1]
                doc = self.doc.before(rf"#\s*define\s+{name}\b")
                self.defines.append((name, self.h.defines[name], expr, doc))

        # Enums: name, doc, [(enumerator, value, doc)].
        self.enums = []
        for name, values in self.h.enums.items():
            body = self.doc.block(rf"typedef\s+enum\s+{name}\s*\{{")
            items = [(e, v, self.doc.trailing(body, rf"\b{e}\b\s*(?:=\s*[^,}}/]*)?")) for e, v in values.items()]
            self.enums.append((name, self.doc.before(rf"typedef\s+enum\s+{name}\s*\{{"), items))

        # Opaque handles, aliases and function-pointer typedefs, in header order.
        found = []
        for m in re.finditer(r"typedef\s+struct\s+(\w+)\s+(\w+)\s*;", text):
            if m.group(2) not in self.h.api.structs:
                found.append((m.start(), Typedef("opaque", m.group(2))))
        for m in re.finditer(r"typedef\s+(fwp_\w+)\s+(fwp_\w+)\s*;", text):
            found.append((m.start(), Typedef("alias", m.group(2), target=m.group(1))))
        for m in re.finditer(r"typedef\s+([\w\s\*]+?)\(\s*\*\s*(\w+)\s*\)\s*\(([^()]*)\)\s*;", text):
            params = []
            ptext = " ".join(m.group(3).split())
            if ptext not in ("", "void"):
                for p in ptext.split(","):
                    pm = re.fullmatch(r"(.+?[\s\*])(\w+)", p.strip())
                    if not pm:
                        raise SystemExit(f"gen_bindings: cannot parse parameter '{p}' of {m.group(2)}")
                    params.append((pm.group(2), self.h.ctype(pm.group(1))))
            found.append((m.start(), Typedef("fnptr", m.group(2), ret=self.h.ctype(m.group(1)), params=tuple(params))))
        self.typedefs = [t for _, t in sorted(found, key=lambda x: x[0])]
        for t in self.typedefs:
            if t.kind == "fnptr":
                t.doc = self.doc.before(rf"typedef\s+[\w\s\*]+\(\s*\*\s*{t.name}\s*\)")
            elif t.kind == "alias":
                t.doc = self.doc.before(rf"typedef\s+{t.target}\s+{t.name}\s*;")
            else:
                t.doc = self.doc.before(rf"typedef\s+struct\s+\w+\s+{t.name}\s*;")

        # Structs: name, doc, [(field, type, array dim name or None, doc)].
        self.structs = []
        stripped = strip_c_comments(raw)
        for name, st in self.h.api.structs.items():
            body = self.doc.block(rf"typedef\s+struct\s+{name}\s*\{{")
            plain_body = Doc(stripped).block(rf"typedef\s+struct\s+{name}\s*\{{")
            fields = []
            for fname, ftype in st.fields:
                dm = re.search(rf"\b{fname}\s*\[\s*(\w+)\s*\]", plain_body)
                fdoc = self.doc.trailing(body, rf"\b{fname}\s*(?:\[\s*\w+\s*\])?\s*;")
                fields.append((fname, ftype, dm.group(1) if dm else None, fdoc))
            self.structs.append((name, self.doc.before(rf"typedef\s+struct\s+{name}\s*\{{"), fields))

        # Functions in header order.
        self.functions = []
        for name, fn in self.h.api.functions.items():
            doc = self.doc.before(rf"FWP_API\s+[^;{{}}()]*?\b{name}\s*\(")
            self.functions.append((name, fn.ret, fn.params, doc))


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def titled(name: str, doc: str, what: str) -> str:
    """`name`: doc, with the doc's first letter lowered after the colon."""
    if not doc:
        return fallback(name, what)
    if len(doc) > 1 and doc[0].isupper() and doc[1].islower():
        doc = doc[0].lower() + doc[1:]
    return f"`{name}`: {doc}"


def fallback(name: str, what: str) -> str:
    return f"The {what} `{name}` of the C API."


# ----------------------------------------------------------------------------
# Rust
# ----------------------------------------------------------------------------

RUST_KEYWORDS = set(
    "as break const continue crate else enum extern false fn for if impl in let loop match mod move mut pub ref "
    "return self Self static struct super trait true type unsafe use where while async await dyn abstract become "
    "box do final macro override priv typeof unsized virtual yield try gen".split()
)
RUST_SCALARS = {"i32": "i32", "u32": "u32", "i64": "i64", "u64": "u64", "f32": "f32", "f64": "f64",
                "usize": "usize", "char": "c_char", "void": "c_void"}


def rust_doc(text: str, indent: str) -> list[str]:
    # Escape what Markdown would read as links, HTML or emphasis.
    text = re.sub(r"([\[\]<>*])", r"\\\1", text)
    width = max(40, 116 - len(indent))
    return [f"{indent}/// {line}" for line in textwrap.wrap(text, width, break_on_hyphens=False)] or [f"{indent}///"]


def rust_ident(name: str) -> str:
    return f"r#{name}" if name in RUST_KEYWORDS else name


def rust_type(t: tuple, dims: str | None = None) -> str:
    kind = t[0]
    if kind in RUST_SCALARS:
        return RUST_SCALARS[kind]
    if kind in ("enum", "struct", "fnptr"):
        return t[1]
    if kind == "ptr":
        return f"{'*const' if t[1] else '*mut'} {rust_type(t[2])}"
    if kind == "array":
        return f"[{rust_type(t[1])}; {dims if dims else t[2]}]"
    raise ValueError(f"no Rust type for {t}")


def rust_fn_sig(params, ret) -> tuple[str, str]:
    args = ", ".join(f"{rust_ident(n)}: {rust_type(t)}" for n, t in params)
    return args, ("" if ret == ("void",) else f" -> {rust_type(ret)}")


def generate_rust(api: Api) -> str:
    out = [
        "// @generated by scripts/gen_bindings.py from include/fwp/*.h: do not edit.",
        "// Regenerate with `python3 scripts/gen_bindings.py`; the test suite checks that",
        "// this file equals a fresh generation.",
        "",
        "use core::ffi::{c_char, c_void};",
        "",
    ]
    # Constants: usize where a struct uses them as an array length, else i32
    # (i64 if the value needs it).
    array_dims = {dim for _, _, fields in api.structs for _, _, dim, _ in fields if dim}
    types = {}
    for name, value, _, _ in api.defines:
        types[name] = "usize" if name in array_dims else ("i32" if -2**31 <= value < 2**31 else "i64")
    for name, value, expr, doc in api.defines:
        used = re.findall(r"\bFWP_[A-Z0-9_]+\b", expr)
        plain = re.fullmatch(r"[\w+\-*() ]+", expr) and all(types.get(u) == types[name] for u in used)
        out += rust_doc(doc or fallback(name, "constant"), "")
        out.append(f"pub const {name}: {types[name]} = {expr if plain else value};")
    out.append("")

    for name, doc, items in api.enums:
        out.append("c_enum! {")
        out += rust_doc(titled(name, doc, "enum"), "    ")
        out.append(f"    {name} {{")
        for e, v, edoc in items:
            out += rust_doc(edoc or f"`{e}`.", "        ")
            out.append(f"        {e} = {v},")
        out.append("    }")
        out.append("}")
        out.append("")

    for t in api.typedefs:
        doc = titled(t.name, t.doc, "type")
        if t.kind == "opaque":
            out.append("opaque! {")
            out += rust_doc(doc, "    ")
            out.append(f"    {t.name}")
            out.append("}")
        elif t.kind == "alias":
            out += rust_doc(doc, "")
            out.append(f"pub type {t.name} = {t.target};")
        else:
            args, ret = rust_fn_sig(t.params, t.ret)
            out += rust_doc(doc, "")
            line = f'pub type {t.name} = Option<unsafe extern "C" fn({args}){ret}>;'
            out.append(line if len(line) <= 120 else line.replace(" = ", " =\n    ", 1))
        out.append("")

    for name, doc, fields in api.structs:
        out += rust_doc(titled(name, doc, "struct"), "")
        out.append("#[repr(C)]")
        out.append("#[derive(Clone, Copy, Debug)]")
        out.append(f"pub struct {name} {{")
        for fname, ftype, dim, fdoc in fields:
            out += rust_doc(fdoc or f"`{fname}`.", "    ")
            out.append(f"    pub {rust_ident(fname)}: {rust_type(ftype, dim)},")
        out.append("}")
        out.append("")

    out.append('extern "C" {')
    for i, (name, ret, params, doc) in enumerate(api.functions):
        if i:
            out.append("")
        args, rets = rust_fn_sig(params, ret)
        out += rust_doc(doc or fallback(name, "function"), "    ")
        line = f"    pub fn {name}({args}){rets};"
        if len(line) <= 120:
            out.append(line)
        else:
            out.append(f"    pub fn {name}(")
            out += [f"        {rust_ident(n)}: {rust_type(t)}," for n, t in params]
            out.append(f"    ){rets};")
    out.append("}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------
# Julia
# ----------------------------------------------------------------------------

JULIA_KEYWORDS = set(
    "baremodule begin break catch const continue do else elseif end export false finally for function global if "
    "import let local macro module quote return struct true try using while abstract mutable primitive type "
    "where in isa outer".split()
)
JULIA_SCALARS = {"i32": "Int32", "u32": "UInt32", "i64": "Int64", "u64": "UInt64", "f32": "Cfloat",
                 "f64": "Cdouble", "usize": "Csize_t", "char": "UInt8", "void": "Cvoid"}


def julia_doc(text: str, indent: str = "") -> list[str]:
    """A docstring: one quoted line, or a triple-quoted block when long."""
    text = text.replace("\\", "\\\\").replace("$", "\\$").replace('"', '\\"')
    if len(indent) + len(text) + 2 <= 116:
        return [f'{indent}"{text}"']
    lines = textwrap.wrap(text, 116 - len(indent), break_long_words=False, break_on_hyphens=False)
    return [f'{indent}"""'] + [f"{indent}{line}" for line in lines] + [f'{indent}"""']


def julia_ident(name: str) -> str:
    return f"{name}_" if name in JULIA_KEYWORDS else name


def julia_type(t: tuple, dims: str | None = None, arg: bool = False) -> str:
    """`arg`: a function argument or result, where `const char*` is a Cstring."""
    kind = t[0]
    if kind in JULIA_SCALARS:
        return JULIA_SCALARS[kind]
    if kind in ("enum", "struct", "fnptr"):
        return t[1]
    if kind == "ptr":
        if arg and t[1] and t[2] == ("char",):
            return "Cstring"
        return f"Ptr{{{julia_type(t[2])}}}"
    if kind == "array":
        return f"NTuple{{{dims if dims else t[2]},{julia_type(t[1])}}}"
    raise ValueError(f"no Julia type for {t}")


JULIA_PREAMBLE = '''# @generated by scripts/gen_bindings.py from include/fwp/*.h: do not edit.
# Regenerate with `python3 scripts/gen_bindings.py`; the test suite checks that
# this file equals a fresh generation.

"""
    LibFwp

Raw bindings of the C API of libfwp (`include/fwp/fwp.h`), generated from the
headers: one Julia function per C function, with the C name and the C
argument order, each a single `@ccall`. Structs and enums mirror the header
field by field; each declaration carries the header's brief description.

C enums are plain `Cint` aliases with one constant per enumerator, so values
from a newer library stay representable. Pointers are 0-based and unchecked
here: use the safe API of `FastWeights` unless you need the raw calls.

The library is `ENV["FWP_LIBRARY"]` (a path or a name the dynamic loader can
find) read when the package is loaded, or `"libfwp"`.
"""
module LibFwp

const _LIBRARY = Ref{String}("libfwp")

"""
    libfwp() -> String

The name or path of the shared library the `@ccall`s use: `ENV["FWP_LIBRARY"]`
when the module was loaded, else `"libfwp"`. It must not change after the
first call into the library.
"""
libfwp() = _LIBRARY[]

function __init__()
    _LIBRARY[] = get(ENV, "FWP_LIBRARY", "libfwp")
    return nothing
end
'''


def generate_julia(api: Api) -> str:
    out = [JULIA_PREAMBLE]
    out.append("# " + "-" * 75)
    out.append("# Constants (#define)")
    out.append("")
    for name, value, expr, doc in api.defines:
        plain = re.fullmatch(r"[\w+\-*() ]+", expr)
        out += julia_doc(doc or fallback(name, "constant"))
        out.append(f"const {name} = {expr if plain else value}")
    out.append("")
    out.append("# " + "-" * 75)
    out.append("# Enums (C enums are int-sized)")
    for name, doc, items in api.enums:
        out.append("")
        out += julia_doc(titled(name, doc, "enum"))
        out.append(f"const {name} = Cint")
        for e, v, edoc in items:
            if edoc:
                out += julia_doc(edoc)
            out.append(f"const {e} = {name}({v})")
    out.append("")
    out.append("# " + "-" * 75)
    out.append("# Handles and other typedefs")
    out.append("")
    for t in api.typedefs:
        doc = titled(t.name, t.doc, "type")
        if t.kind == "opaque":
            out += julia_doc(f"Opaque {doc}")
            out.append(f"mutable struct {t.name} end")
        elif t.kind == "alias":
            out += julia_doc(doc)
            out.append(f"const {t.name} = {t.target}")
        else:
            out += julia_doc(doc + " A C function pointer (`@cfunction`).")
            out.append(f"const {t.name} = Ptr{{Cvoid}}")
    out.append("")
    out.append("# " + "-" * 75)
    out.append("# Structs (field order and widths as in the header)")
    for name, doc, fields in api.structs:
        out.append("")
        out += julia_doc(titled(name, doc, "struct"))
        out.append(f"struct {name}")
        for fname, ftype, dim, fdoc in fields:
            if fdoc:
                out += julia_doc(fdoc, "    ")
            out.append(f"    {fname}::{julia_type(ftype, dim)}")
        out.append("end")
    out.append("")
    out.append("# " + "-" * 75)
    out.append("# Functions, in the order of the headers")
    for name, ret, params, doc in api.functions:
        out.append("")
        out += julia_doc(doc or fallback(name, "function"))
        names = [julia_ident(n) for n, _ in params]
        args = ", ".join(f"{n}::{julia_type(t, arg=True)}" for n, (_, t) in zip(names, params))
        head = f"{name}({', '.join(names)}) ="
        call = f"@ccall libfwp().{name}({args})::{julia_type(ret, arg=True)}"
        if len(head) + 1 + len(call) <= 116:
            out.append(f"{head} {call}")
        elif len(call) <= 112:
            out.append(head)
            out.append(f"    {call}")
        else:
            suffix = f")::{julia_type(ret, arg=True)}"
            out.append(head)
            out.append(f"    @ccall libfwp().{name}(")
            lines = textwrap.wrap(args, 108 - len(suffix), break_long_words=False, break_on_hyphens=False)
            lines[-1] += suffix
            out += [f"        {line}" for line in lines]
    out.append("")
    out.append("end # module LibFwp")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="repository root (default: this script's)")
    ap.add_argument("--check", action="store_true",
                    help="compare the checked-in files with a fresh generation instead of writing them")
    args = ap.parse_args()
    api = Api(args.root / "include/fwp/fwp.h")
    outputs = {RUST_OUT: generate_rust(api), JULIA_OUT: generate_julia(api)}
    stale = []
    for rel, text in outputs.items():
        path = args.root / rel
        if args.check:
            old = path.read_text() if path.exists() else ""
            if old != text:
                stale.append(rel)
                diff = difflib.unified_diff(old.splitlines(True), text.splitlines(True), f"{rel} (checked in)",
                                            f"{rel} (generated)", n=1)
                sys.stderr.writelines(list(diff)[:80])
        elif not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"gen_bindings: wrote {rel}")
    if stale:
        print(f"gen_bindings: FAILED: {', '.join(stale)} differ from the headers; "
              "run `python3 scripts/gen_bindings.py` and commit the result", file=sys.stderr)
        return 1
    if args.check:
        print(f"gen_bindings: OK. {len(api.functions)} functions, {len(api.structs)} structs, "
              f"{len(api.enums)} enums, {len(api.defines)} constants are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
