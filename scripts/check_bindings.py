#!/usr/bin/env python3
"""Checks that the Rust and Julia bindings declare exactly the C API of fwp.h
(the umbrella header and every header it includes).

The C header include/fwp/fwp.h is the single source of truth. This script
parses its FWP_API prototypes, typedef'd enums (names and values), structs
(fields in order) and integer #defines, and compares them with

  * the Rust crate fwp-sys (bindings/rust/fwp-sys/src/*.rs): `extern "C"`
    functions, `#[repr(C)]` structs, enum newtypes and constants, and
  * the Julia package FastWeights.jl (bindings/julia/**/*.jl): every `@ccall`
    and `ccall`, the C-mirroring structs, and the enum and #define constants.

Every .jl file is parsed with tree-sitter-julia and must parse without ERROR or
MISSING nodes. Types are compared after mapping both sides to one canonical
form (e.g. `const float*` -> `*const f32` in Rust, `Ptr{Cfloat}` in Julia;
enums -> 32-bit integers or their named alias; `const char*` -> `Cstring`).
Rust pointer constness must match the header; Julia has no const pointers.

Any C function, struct, field or constant without a binding, any binding
without a C counterpart, any mismatched signature, and any generic name that
FastWeights.jl exports (e.g. `sample`, `forward`, `config`) fails the check
(exit status 1). Missing Python modules also fail (exit status 2): install them
with `python3 -m pip install --user tree_sitter tree_sitter_julia`.

Usage: check_bindings.py [--root DIR] [--header H] [--rust DIR] [--julia DIR] [-v]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# ----------------------------------------------------------------------------
# Canonical types
#
# A type is a tuple:
#   ("void",) ("i32",) ("u32",) ("i64",) ("u64",) ("f32",) ("f64",) ("char",)
#   ("usize",) ("enum", name) ("struct", name) ("fnptr",)
#   ("ptr", is_const, inner)   is_const: True/False, or None when unknown (Julia)
#   ("array", inner, n)
# ----------------------------------------------------------------------------

Type = tuple


def show(t: Type) -> str:
    kind = t[0]
    if kind in ("enum", "struct"):
        return t[1]
    if kind == "ptr":
        const = {True: "const ", False: "", None: "?"}[t[1]]
        return f"{const}{show(t[2])}*"
    if kind == "array":
        return f"{show(t[1])}[{t[2]}]"
    return kind


def compatible(c: Type, other: Type, check_const: bool) -> bool:
    """Whether a binding's type `other` matches the C type `c`."""
    if c == other:
        return True
    if c[0] == "enum":
        # A plain 32-bit int is ABI-compatible with a C enum; a named enum must be the same one.
        return other == ("i32",)
    if c[0] == "fnptr":
        return other in (("fnptr",), ("ptr", None, ("void",)))
    if c[0] == "ptr" and other[0] == "ptr":
        if check_const and other[1] is not None and c[1] != other[1]:
            return False
        return compatible(c[2], other[2], check_const)
    if c[0] == "array" and other[0] == "array":
        return c[2] == other[2] and compatible(c[1], other[1], check_const)
    return False


@dataclass
class Function:
    name: str
    ret: Type
    params: list  # of (name, Type)
    where: str = ""


@dataclass
class Struct:
    name: str
    fields: list  # of (name, Type)
    where: str = ""


@dataclass
class Api:
    functions: dict = field(default_factory=dict)  # name -> Function
    structs: dict = field(default_factory=dict)  # name -> Struct
    constants: dict = field(default_factory=dict)  # name -> int
    errors: list = field(default_factory=list)


# ----------------------------------------------------------------------------
# C header
# ----------------------------------------------------------------------------

C_SCALARS = {
    "void": ("void",),
    "int": ("i32",),
    "int32_t": ("i32",),
    "uint32_t": ("u32",),
    "int64_t": ("i64",),
    "uint64_t": ("u64",),
    "float": ("f32",),
    "double": ("f64",),
    "char": ("char",),
    "size_t": ("usize",),
}


def strip_c_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: " " * 0 + "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def read_public_headers(path: Path, seen: set | None = None) -> str:
    """The text of a public header with its `#include "fwp/X.h"` lines replaced
    by those headers' text (each once), so the umbrella fwp.h reads as the
    whole API."""
    seen = set() if seen is None else seen
    path = path.resolve()
    if path in seen:
        return ""
    seen.add(path)
    out = []
    for line in path.read_text().split("\n"):
        m = re.match(r'\s*#\s*include\s+"fwp/([A-Za-z0-9_]+\.h)"', line)
        if m:
            out.append(read_public_headers(path.parent / m.group(1), seen))
        else:
            out.append(line)
    return "\n".join(out)


class Header:
    def __init__(self, path: Path):
        self.path = path
        raw = read_public_headers(path)
        text = strip_c_comments(raw)
        # Preprocessor lines (with continuations) carry no declarations we need
        # except simple integer #defines.
        self.defines: dict[str, int] = {}
        kept = []
        lines = text.split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith("#"):
                full = line
                while full.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    full = full[:-1] + lines[i]
                m = re.match(r"\s*#\s*define\s+(FWP_[A-Z0-9_]+)\s+(.+)$", full)
                if m and m.group(1) != "FWP_API" and not m.group(1).startswith("FWP_FWP_H"):
                    value = self._eval_int(m.group(2))
                    if value is not None:
                        self.defines[m.group(1)] = value
                kept.append("")
            else:
                kept.append(line)
            i += 1
        self.text = "\n".join(kept)
        self.enums: dict[str, dict[str, int]] = {}
        self.opaque: set[str] = set()
        self.aliases: dict[str, str] = {}  # typedef'd names of other fwp types
        self.fnptrs: set[str] = set()
        self.api = Api()
        self._parse_enums()
        self._parse_typedefs()
        self._parse_structs()
        self._parse_functions()
        for enum in self.enums.values():
            self.api.constants.update(enum)
        self.api.constants.update(self.defines)

    def _eval_int(self, expr: str):
        expr = expr.strip()
        for name, value in sorted(self.defines.items(), key=lambda kv: -len(kv[0])):
            expr = re.sub(rf"\b{name}\b", str(value), expr)
        if not re.fullmatch(r"[0-9+\-*/() ]+", expr):
            return None
        try:
            return int(eval(expr, {"__builtins__": {}}))  # digits and operators only
        except Exception:
            return None

    def _parse_enums(self):
        for m in re.finditer(r"typedef\s+enum\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", self.text, re.S):
            tag, body, name = m.groups()
            if tag != name:
                self.api.errors.append(f"header: enum tag {tag} differs from typedef {name}")
            values = {}
            next_value = 0
            for item in body.split(","):
                item = item.strip()
                if not item:
                    continue
                em = re.fullmatch(r"(\w+)\s*(?:=\s*(.+))?", item, re.S)
                if not em:
                    self.api.errors.append(f"header: cannot parse enumerator '{item}' of {name}")
                    continue
                if em.group(2) is not None:
                    v = self._eval_int(em.group(2))
                    if v is None:
                        self.api.errors.append(f"header: cannot evaluate {em.group(1)} = {em.group(2)}")
                        continue
                    next_value = v
                values[em.group(1)] = next_value
                next_value += 1
            self.enums[name] = values

    def _parse_typedefs(self):
        for m in re.finditer(r"typedef\s+struct\s+(\w+)\s+(\w+)\s*;", self.text):
            self.opaque.add(m.group(2))
        # `typedef fwp_data fwp_retrieval_data;`: another name for a type, resolved
        # to it (bindings declare it as an alias, e.g. `pub type X = fwp_data;`).
        for m in re.finditer(r"typedef\s+(fwp_\w+)\s+(fwp_\w+)\s*;", self.text):
            self.aliases[m.group(2)] = m.group(1)
        for m in re.finditer(r"typedef\s+[\w\s\*]+\(\s*\*\s*(\w+)\s*\)\s*\(", self.text):
            self.fnptrs.add(m.group(1))

    def ctype(self, decl: str) -> Type:
        """Canonical type of a C type text such as `const fwp_layer*`."""
        decl = decl.strip()
        depth = decl.count("*")
        # Split at the stars: the qualifiers before the first star belong to the pointee.
        parts = decl.split("*")
        base_words = parts[0].split()
        const_base = "const" in base_words
        base_words = [w for w in base_words if w not in ("const", "struct", "enum", "volatile")]
        if len(base_words) != 1:
            raise ValueError(f"cannot parse C type '{decl}'")
        base = base_words[0]
        seen = set()
        while base in self.aliases and base not in seen:
            seen.add(base)
            base = self.aliases[base]
        if base in C_SCALARS:
            t = C_SCALARS[base]
        elif base in self.enums:
            t = ("enum", base)
        elif base in self.fnptrs:
            t = ("fnptr",)
        elif base in self.opaque or re.fullmatch(r"fwp_\w+", base):
            t = ("struct", base)
        else:
            raise ValueError(f"unknown C type '{base}' in '{decl}'")
        is_const = const_base
        for level in range(depth):
            t = ("ptr", is_const, t)
            # `T* const*`: a const after a star qualifies the next pointee.
            is_const = "const" in parts[level + 1].split()
        return t

    def _parse_structs(self):
        for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", self.text, re.S):
            tag, body, name = m.groups()
            fields = []
            for decl in body.split(";"):
                decl = " ".join(decl.split())
                if not decl:
                    continue
                fm = re.fullmatch(r"(.+?)\s*\b(\w+)\s*(?:\[\s*(\w+)\s*\])?", decl)
                if not fm:
                    self.api.errors.append(f"header: cannot parse field '{decl}' of {name}")
                    continue
                ftype, fname, dim = fm.groups()
                try:
                    t = self.ctype(ftype)
                except ValueError as e:
                    self.api.errors.append(f"header: {name}.{fname}: {e}")
                    continue
                if dim is not None:
                    n = int(dim) if dim.isdigit() else self.defines.get(dim)
                    if n is None:
                        self.api.errors.append(f"header: unknown array size {dim} in {name}.{fname}")
                        continue
                    t = ("array", t, n)
                fields.append((fname, t))
            self.api.structs[name] = Struct(name, fields, str(self.path))
            self.opaque.discard(name)

    def _parse_functions(self):
        pattern = re.compile(r"\bFWP_API\s+([^;{}()]+?)\b(fwp_\w+)\s*\(([^()]*)\)\s*;", re.S)
        for m in pattern.finditer(self.text):
            ret_text, name, params_text = m.groups()
            try:
                ret = self.ctype(ret_text)
                params = []
                params_text = " ".join(params_text.split())
                if params_text not in ("", "void"):
                    for p in params_text.split(","):
                        pm = re.fullmatch(r"(.+?[\s\*])(\w+)", p.strip())
                        if not pm:
                            raise ValueError(f"cannot parse parameter '{p.strip()}'")
                        params.append((pm.group(2), self.ctype(pm.group(1))))
            except ValueError as e:
                self.api.errors.append(f"header: {name}: {e}")
                continue
            if name in self.api.functions:
                self.api.errors.append(f"header: {name} is declared twice")
            self.api.functions[name] = Function(name, ret, params, str(self.path))
        # Every FWP_API must have been understood.
        declared = len(re.findall(r"\bFWP_API\b", self.text))
        if declared != len(self.api.functions):
            self.api.errors.append(
                f"header: {declared} FWP_API declarations but {len(self.api.functions)} prototypes parsed"
            )


# ----------------------------------------------------------------------------
# Small type-expression parser shared by Rust (`*const [i64; 4]`) and Julia (`Ptr{NTuple{4,Int64}}`)
# ----------------------------------------------------------------------------


def split_top(text: str, sep: str = ",") -> list[str]:
    """Splits at `sep` outside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "{[(<":
            depth += 1
        elif ch in "}])>":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [s.strip() for s in out]


# ----------------------------------------------------------------------------
# Rust (fwp-sys)
# ----------------------------------------------------------------------------

RUST_SCALARS = {
    "i32": ("i32",), "c_int": ("i32",),
    "u32": ("u32",), "c_uint": ("u32",),
    "i64": ("i64",), "c_longlong": ("i64",),
    "u64": ("u64",), "c_ulonglong": ("u64",),
    "f32": ("f32",), "c_float": ("f32",),
    "f64": ("f64",), "c_double": ("f64",),
    "c_char": ("char",), "i8": ("char",),
    "usize": ("usize",), "c_void": ("void",), "()": ("void",),
}


def strip_rust_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


class RustBindings:
    def __init__(self, src_dir: Path, header: Header):
        self.header = header
        self.api = Api()
        self.aliases: dict[str, str] = {}
        self.newtypes: set[str] = set()
        files = sorted(src_dir.rglob("*.rs"))
        if not files:
            self.api.errors.append(f"rust: no .rs files under {src_dir}")
        texts = [(f, strip_rust_comments(f.read_text())) for f in files]
        for f, text in texts:
            self._collect_types(text)
        for f, text in texts:
            self._parse(f, text)

    def _collect_types(self, text: str):
        for m in re.finditer(r"\bpub\s+type\s+(\w+)\s*=\s*([^;]+);", text, re.S):
            self.aliases[m.group(1)] = " ".join(m.group(2).split())
        # c_enum! { NAME { ... } } and `pub struct NAME(pub c_int);`
        for m in re.finditer(r"\bc_enum!\s*\{\s*(?:#\[[^\]]*\]\s*)*(\w+)\s*\{", text):
            self.newtypes.add(m.group(1))
        for m in re.finditer(r"\bpub\s+struct\s+(\w+)\s*\(\s*pub\s+(?:core::ffi::|std::os::raw::)?(c_int|i32)\s*\)", text):
            self.newtypes.add(m.group(1))

    def rtype(self, text: str, depth: int = 0) -> Type:
        text = " ".join(text.split())
        text = re.sub(r"\b(?:core::ffi|std::ffi|std::os::raw|libc)::", "", text)
        text = re.sub(r"\bcrate::", "", text)
        if depth > 20:
            raise ValueError(f"alias loop at '{text}'")
        if text.startswith("*const "):
            return ("ptr", True, self.rtype(text[len("*const "):], depth + 1))
        if text.startswith("*mut "):
            return ("ptr", False, self.rtype(text[len("*mut "):], depth + 1))
        m = re.fullmatch(r"\[\s*(.+)\s*;\s*(\w+)\s*\]", text)
        if m:
            n = m.group(2)
            size = int(n) if n.isdigit() else self.api.constants.get(n, self.header.defines.get(n))
            if size is None:
                raise ValueError(f"unknown array length {n}")
            return ("array", self.rtype(m.group(1), depth + 1), size)
        if re.fullmatch(r"Option\s*<\s*(unsafe\s+)?extern\s+\"C\"\s+fn\s*\(.*\).*>", text):
            return ("fnptr",)
        if text in RUST_SCALARS:
            return RUST_SCALARS[text]
        if text in self.newtypes:
            return ("enum", text)
        if text in self.aliases:
            return self.rtype(self.aliases[text], depth + 1)
        if re.fullmatch(r"fwp_\w+", text):
            return ("struct", text)
        raise ValueError(f"unknown Rust type '{text}'")

    def _parse(self, path: Path, text: str):
        where = str(path)
        # extern "C" { ... } blocks: match braces.
        for m in re.finditer(r"\bextern\s+\"C\"\s*\{", text):
            start = m.end()
            depth, i = 1, start
            while i < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            block = text[start:i - 1]
            block = re.sub(r"#\[[^\]]*\]", "", block)
            for fm in re.finditer(r"\bpub\s+(?:unsafe\s+)?fn\s+(\w+)\s*\((.*?)\)\s*(?:->\s*([^;]+?))?\s*;", block, re.S):
                name, params_text, ret_text = fm.groups()
                try:
                    ret = self.rtype(ret_text) if ret_text else ("void",)
                    params = []
                    for p in split_top(params_text):
                        pname, _, ptype = p.partition(":")
                        if not ptype:
                            raise ValueError(f"cannot parse parameter '{p}'")
                        params.append((pname.strip(), self.rtype(ptype)))
                except ValueError as e:
                    self.api.errors.append(f"rust: {name}: {e}")
                    continue
                if name in self.api.functions:
                    self.api.errors.append(f"rust: {name} is declared twice")
                self.api.functions[name] = Function(name, ret, params, where)
        # #[repr(C)] structs with named fields.
        for sm in re.finditer(r"#\[repr\(C\)\]\s*(?:#\[[^\]]*\]\s*)*pub\s+struct\s+(\w+)\s*\{", text):
            name = sm.group(1)
            start = sm.end()
            depth, i = 1, start
            while i < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            body = re.sub(r"#\[[^\]]*\]", "", text[start:i - 1])
            if "_data" in body and "_marker" in body:
                continue  # opaque handle
            fields = []
            for decl in split_top(body):
                fm = re.fullmatch(r"pub\s+(\w+)\s*:\s*(.+)", decl, re.S)
                if not fm:
                    self.api.errors.append(f"rust: cannot parse field '{decl}' of {name} (fields must be pub)")
                    continue
                try:
                    fields.append((fm.group(1), self.rtype(fm.group(2))))
                except ValueError as e:
                    self.api.errors.append(f"rust: {name}.{fm.group(1)}: {e}")
            self.api.structs[name] = Struct(name, fields, where)
        # Enum constants in c_enum! blocks, and `pub const FWP_X: T = ...;`
        for cm in re.finditer(r"\bc_enum!\s*\{(.*?)\n\}", text, re.S):
            for em in re.finditer(r"\b(FWP_[A-Z0-9_]+)\s*=\s*(-?\d+)\s*,", cm.group(1)):
                self._add_constant(em.group(1), int(em.group(2)))
        for km in re.finditer(r"\bpub\s+const\s+(FWP_[A-Z0-9_]+)\s*:\s*[^=]+=\s*([^;]+);", text):
            value = self._eval(km.group(2))
            if value is None:
                self.api.errors.append(f"rust: cannot evaluate constant {km.group(1)} = {km.group(2).strip()}")
            else:
                self._add_constant(km.group(1), value)

    def _add_constant(self, name: str, value: int):
        if name in self.api.constants and self.api.constants[name] != value:
            self.api.errors.append(f"rust: constant {name} defined twice with different values")
        self.api.constants[name] = value

    def _eval(self, expr: str):
        expr = expr.strip()
        m = re.fullmatch(r"\w+\(\s*(-?\d+)\s*\)", expr)  # fwp_status(0)
        if m:
            return int(m.group(1))
        for name, value in sorted(self.api.constants.items(), key=lambda kv: -len(kv[0])):
            expr = re.sub(rf"\b{name}\b", str(value), expr)
        if not re.fullmatch(r"[0-9+\-*/() ]+", expr):
            return None
        try:
            return int(eval(expr, {"__builtins__": {}}))
        except Exception:
            return None


# ----------------------------------------------------------------------------
# Julia (FastWeights.jl), via tree-sitter-julia
# ----------------------------------------------------------------------------

JULIA_SCALARS = {
    "Cint": ("i32",), "Int32": ("i32",),
    "Cuint": ("u32",), "UInt32": ("u32",),
    "Clonglong": ("i64",), "Int64": ("i64",),
    "Culonglong": ("u64",), "UInt64": ("u64",),
    "Cfloat": ("f32",), "Float32": ("f32",),
    "Cdouble": ("f64",), "Float64": ("f64",),
    "Cchar": ("char",), "UInt8": ("char",), "Int8": ("char",),
    "Csize_t": ("usize",),
    "Cvoid": ("void",), "Nothing": ("void",),
}


def load_tree_sitter():
    try:
        import tree_sitter  # noqa: F401
        import tree_sitter_julia  # noqa: F401
    except ImportError as e:
        print(
            f"check_bindings: FAILED: Python module missing ({e}).\n"
            "  Install with: python3 -m pip install --user tree_sitter tree_sitter_julia",
            file=sys.stderr,
        )
        sys.exit(2)
    language = tree_sitter.Language(tree_sitter_julia.language())
    try:
        return tree_sitter.Parser(language)
    except TypeError:  # tree_sitter < 0.22
        parser = tree_sitter.Parser()
        parser.set_language(language)
        return parser


def walk(node):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def text_of(node) -> str:
    return node.text.decode("utf-8")


def named(node):
    return [c for c in node.children if c.is_named and c.type not in ("comment", "line_comment", "block_comment")]


# Names FastWeights.jl must not export: generic verbs and nouns that common
# packages (Base, StatsBase, Flux, Lux, CUDA, Pkg, ...) export or extend, and the
# non-`!` forms of functions that mutate their argument. They may be public and
# called qualified (`FastWeights.config(layer)`).
JULIA_UNEXPORTABLE = {
    "sample", "forward", "backward", "config", "device", "steps", "step", "seq_len", "learning_rate",
    "version", "num_threads", "params", "update", "train", "zero_grad", "load", "save", "reset", "state",
}


class JuliaBindings:
    def __init__(self, root: Path, header: Header, parser):
        self.header = header
        self.api = Api()
        self.aliases: dict[str, str] = {}
        self.exports: dict[str, str] = {}  # exported name -> where
        self.files = sorted(root.rglob("*.jl"))
        if not self.files:
            self.api.errors.append(f"julia: no .jl files under {root}")
        trees = []
        for f in self.files:
            src = f.read_bytes()
            tree = parser.parse(src)
            bad = [n for n in walk(tree.root_node) if n.type == "ERROR" or n.is_missing]
            for n in bad[:5]:
                line, col = n.start_point
                kind = "missing " + n.type if n.is_missing else "syntax error"
                snippet = text_of(n)[:60].replace("\n", " ")
                self.api.errors.append(f"julia: {f}:{line + 1}:{col + 1}: {kind} near '{snippet}'")
            trees.append((f, tree))
        for f, tree in trees:
            self._collect_consts(f, tree)
        for f, tree in trees:
            self._parse(f, tree)

    # `const X = Y`: type aliases (Y a type expression) and integer constants.
    def _collect_consts(self, path: Path, tree):
        for n in walk(tree.root_node):
            if n.type != "const_statement":
                continue
            assign = next((c for c in named(n) if c.type == "assignment"), None)
            if assign is None:
                continue
            parts = named(assign)
            if len(parts) < 3 or parts[0].type != "identifier":
                continue
            name, value = text_of(parts[0]), parts[-1]
            vtext = "".join(text_of(value).split())
            if re.fullmatch(r"FWP_[A-Z0-9_]+", name):
                v = self._eval(vtext)
                if v is None:
                    self.api.errors.append(f"julia: {path}: cannot evaluate constant {name} = {vtext}")
                elif name in self.api.constants and self.api.constants[name] != v:
                    self.api.errors.append(f"julia: constant {name} defined twice with different values")
                else:
                    self.api.constants[name] = v
            elif value.type in ("identifier", "parametrized_type_expression"):
                self.aliases[name] = vtext

    def _eval(self, expr: str):
        m = re.fullmatch(r"\w+\((-?\d+)\)", expr)  # fwp_status(0), Cint(0)
        if m:
            return int(m.group(1))
        for name, value in sorted(self.api.constants.items(), key=lambda kv: -len(kv[0])):
            expr = re.sub(rf"\b{name}\b", str(value), expr)
        if not re.fullmatch(r"[0-9+\-*() ]+", expr):
            return None
        try:
            return int(eval(expr, {"__builtins__": {}}))
        except Exception:
            return None

    def jtype(self, text: str, depth: int = 0) -> Type:
        text = "".join(text.split())
        if depth > 20:
            raise ValueError(f"alias loop at '{text}'")
        if text == "Cstring":
            return ("ptr", None, ("char",))
        m = re.fullmatch(r"(Ptr|Ref)\{(.+)\}", text)
        if m:
            return ("ptr", None, self.jtype(m.group(2), depth + 1))
        m = re.fullmatch(r"NTuple\{(.+)\}", text)
        if m:
            args = split_top(m.group(1))
            if len(args) != 2:
                raise ValueError(f"cannot parse '{text}'")
            n = int(args[0]) if args[0].isdigit() else self.api.constants.get(args[0])
            if n is None:
                raise ValueError(f"unknown tuple length {args[0]}")
            return ("array", self.jtype(args[1], depth + 1), n)
        if text in JULIA_SCALARS:
            return JULIA_SCALARS[text]
        if text in self.header.enums:
            # Julia has no distinct enum ABI type: the alias must resolve to Cint/Int32.
            target = self.jtype(self.aliases[text], depth + 1) if text in self.aliases else None
            if target != ("i32",):
                raise ValueError(f"enum alias {text} must be `const {text} = Cint`")
            return ("enum", text)
        if text in self.aliases:
            return self.jtype(self.aliases[text], depth + 1)
        if re.fullmatch(r"fwp_\w+", text):
            return ("struct", text)
        raise ValueError(f"unknown Julia type '{text}'")

    def _parse(self, path: Path, tree):
        for n in walk(tree.root_node):
            if n.type == "export_statement":
                for c in named(n):
                    if c.type == "identifier":
                        self.exports[text_of(c)] = f"{path}:{c.start_point[0] + 1}"
            if n.type == "macrocall_expression":
                ident = next((c for c in n.children if c.type == "macro_identifier"), None)
                if ident is not None and text_of(ident).replace(" ", "") in ("@ccall", "@ccall_effects"):
                    self._macro_ccall(path, n)
            elif n.type == "call_expression":
                callee = n.children[0] if n.children else None
                if callee is not None and callee.type == "identifier" and text_of(callee) == "ccall":
                    self._plain_ccall(path, n)
            elif n.type == "struct_definition":
                self._struct(path, n)

    def _record(self, path: Path, node, name: str, ret_text: str, arg_texts: list[str]):
        where = f"{path}:{node.start_point[0] + 1}"
        try:
            fn = Function(name, self.jtype(ret_text), [(f"arg{i + 1}", self.jtype(t)) for i, t in enumerate(arg_texts)], where)
        except ValueError as e:
            self.api.errors.append(f"julia: {where}: {name}: {e}")
            return
        previous = self.api.functions.get(name)
        if previous is not None and (previous.ret != fn.ret or previous.params != fn.params):
            self.api.errors.append(f"julia: {name} is called with different signatures at {previous.where} and {where}")
        self.api.functions.setdefault(name, fn)

    def _macro_ccall(self, path: Path, node):
        args = next((c for c in node.children if c.type == "macro_argument_list"), None)
        where = f"{path}:{node.start_point[0] + 1}"
        if args is None or not named(args):
            self.api.errors.append(f"julia: {where}: empty @ccall")
            return
        typed = named(args)[-1]
        parts = named(typed)
        if typed.type != "typed_expression" or len(parts) != 2 or parts[0].type != "call_expression":
            self.api.errors.append(f"julia: {where}: @ccall must be `lib.f(args...)::Ret`")
            return
        call, ret = parts
        callee = call.children[0]
        if callee.type == "field_expression":
            name = text_of(named(callee)[-1])
        elif callee.type == "identifier":
            name = text_of(callee)
        else:
            self.api.errors.append(f"julia: {where}: cannot tell which function @ccall calls")
            return
        arglist = next((c for c in call.children if c.type == "argument_list"), None)
        arg_types = []
        for a in named(arglist) if arglist is not None else []:
            ap = named(a)
            if a.type != "typed_expression" or len(ap) != 2:
                self.api.errors.append(f"julia: {where}: {name}: argument '{text_of(a)}' has no type")
                return
            arg_types.append(text_of(ap[1]))
        self._record(path, node, name, text_of(ret), arg_types)

    def _plain_ccall(self, path: Path, node):
        where = f"{path}:{node.start_point[0] + 1}"
        arglist = next((c for c in node.children if c.type == "argument_list"), None)
        args = named(arglist) if arglist is not None else []
        if len(args) < 3:
            self.api.errors.append(f"julia: {where}: ccall needs (name, lib), return type, argument types")
            return
        spec = text_of(args[0])
        m = re.match(r"\(\s*:(\w+)", spec) or re.match(r"\(\s*\"(\w+)\"", spec)
        if not m:
            self.api.errors.append(f"julia: {where}: cannot tell which function ccall calls")
            return
        types_node = args[2]
        if types_node.type == "tuple_expression":
            arg_types = [text_of(t) for t in named(types_node)]
        elif text_of(types_node).replace(" ", "") == "()":
            arg_types = []
        else:
            self.api.errors.append(f"julia: {where}: ccall argument types must be a literal tuple")
            return
        self._record(path, node, m.group(1), text_of(args[1]), arg_types)

    def _struct(self, path: Path, node):
        head = next((c for c in node.children if c.type == "type_head"), None)
        if head is None:
            return
        name = text_of(named(head)[0]) if named(head) else text_of(head)
        if name not in self.header.api.structs:
            return  # a wrapper type, not a mirror of a C struct
        fields = []
        for c in named(node):
            if c.type == "typed_expression":
                parts = named(c)
                try:
                    fields.append((text_of(parts[0]), self.jtype(text_of(parts[1]))))
                except ValueError as e:
                    self.api.errors.append(f"julia: {path}: {name}.{text_of(parts[0])}: {e}")
            elif c.type == "identifier":
                self.api.errors.append(f"julia: {path}: {name}.{text_of(c)} has no type")
        self.api.structs[name] = Struct(name, fields, f"{path}:{node.start_point[0] + 1}")


# ----------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------


def compare(lang: str, c: Api, b: Api, check_const: bool) -> list[str]:
    errors = list(b.errors)
    for name, cf in c.functions.items():
        bf = b.functions.get(name)
        if bf is None:
            errors.append(f"{lang}: no wrapper for C function {name}")
            continue
        if not compatible(cf.ret, bf.ret, check_const):
            errors.append(f"{lang}: {name} returns {show(bf.ret)}, C returns {show(cf.ret)} ({bf.where})")
        if len(cf.params) != len(bf.params):
            errors.append(
                f"{lang}: {name} takes {len(bf.params)} arguments, C takes {len(cf.params)} ({bf.where})"
            )
            continue
        for i, ((cn, ct), (bn, bt)) in enumerate(zip(cf.params, bf.params)):
            if not compatible(ct, bt, check_const):
                errors.append(
                    f"{lang}: {name} argument {i + 1} ({cn}) is {show(bt)}, C has {show(ct)} ({bf.where})"
                )
    for name, bf in b.functions.items():
        if name not in c.functions:
            errors.append(f"{lang}: {name} is not a function of fwp.h ({bf.where})")
    for name, cs in c.structs.items():
        bs = b.structs.get(name)
        if bs is None:
            errors.append(f"{lang}: no mirror of C struct {name}")
            continue
        cnames = [f[0] for f in cs.fields]
        bnames = [f[0] for f in bs.fields]
        if cnames != bnames:
            errors.append(f"{lang}: fields of {name} are {bnames}, C has {cnames} ({bs.where})")
            continue
        for (fname, ct), (_, bt) in zip(cs.fields, bs.fields):
            if not compatible(ct, bt, check_const):
                errors.append(f"{lang}: {name}.{fname} is {show(bt)}, C has {show(ct)} ({bs.where})")
    for name, value in c.constants.items():
        if name not in b.constants:
            errors.append(f"{lang}: no constant {name} (= {value})")
        elif b.constants[name] != value:
            errors.append(f"{lang}: {name} = {b.constants[name]}, C has {value}")
    for name in b.constants:
        if name not in c.constants:
            errors.append(f"{lang}: constant {name} is not in fwp.h")
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parent.parent
    ap.add_argument("--root", type=Path, default=here, help="repository root (default: this script's)")
    ap.add_argument("--header", type=Path, help="default: ROOT/include/fwp/fwp.h")
    ap.add_argument("--rust", type=Path, help="fwp-sys sources (default: ROOT/bindings/rust/fwp-sys/src)")
    ap.add_argument("--julia", type=Path, help="Julia package (default: ROOT/bindings/julia)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    header_path = args.header or args.root / "include/fwp/fwp.h"
    rust_dir = args.rust or args.root / "bindings/rust/fwp-sys/src"
    julia_dir = args.julia or args.root / "bindings/julia"

    parser = load_tree_sitter()
    header = Header(header_path)
    errors = [f"header: {e}" if not e.startswith("header") else e for e in header.api.errors]
    if not header.api.functions:
        errors.append(f"header: no FWP_API prototypes found in {header_path}")

    rust = RustBindings(rust_dir, header)
    julia = JuliaBindings(julia_dir, header, parser)
    errors += compare("rust", header.api, rust.api, check_const=True)
    errors += compare("julia", header.api, julia.api, check_const=False)
    for name, where in sorted(julia.exports.items()):
        if name in JULIA_UNEXPORTABLE:
            errors.append(f"julia: `{name}` is exported ({where}): a generic name that clashes with other packages; "
                          f"keep it unexported (callers write FastWeights.{name}) or give it a specific name")

    c = header.api
    summary = (
        f"fwp.h: {len(c.functions)} functions, {len(c.structs)} structs, {len(c.constants)} constants; "
        f"rust: {len(rust.api.functions)} functions; julia: {len(julia.api.functions)} ccalls "
        f"in {len(julia.files)} files"
    )
    if args.verbose:
        for f in c.functions.values():
            print(f"  {show(f.ret)} {f.name}({', '.join(show(t) for _, t in f.params)})")
    if errors:
        for e in errors:
            print(f"check_bindings: {e}", file=sys.stderr)
        print(f"check_bindings: FAILED with {len(errors)} problem(s). {summary}", file=sys.stderr)
        return 1
    print(f"check_bindings: OK. {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
