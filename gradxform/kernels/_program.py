"""Any elementwise optimizer step as one pass over memory, on a CPU.

XLA:CPU compiles an optimizer step to one loop per updated array (it has no multi-output
fusion), so a step that updates the parameters and two moments reads the gradients three
times. This module traces the whole step (``tx.update`` then `apply_updates`) to a jaxpr and
cuts it in two:

- the per-leaf elementwise part (everything computed from one parameter leaf's arrays,
  element by element) becomes a small register program, the same for every leaf of the
  same shape of computation, run by the ``gradxform_program_step`` interpreter kernel in
  ``steps.cc``, which reads and writes each array once;
- everything else (counts, schedules, bias corrections, norms, random numbers, reshapes)
  stays with XLA, evaluated primitive by primitive from the same jaxpr.

A connected elementwise part is one "component". It is fused only when
- all its array inputs are float32 arguments of the step (not arrays XLA would have to
  materialize first, such as noise or broadcast accumulators);
- XLA needs none of its values (LAMB's norm of the update would otherwise be computed twice);
- it needs no libm call per element (exp, log, tanh, a general pow), which XLA vectorizes
  and a loop would not.
Nothing here changes the arithmetic: the program performs the jaxpr's operations in the
jaxpr's order, in float32, so results agree with the composition to rounding.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from gradxform.core import GradientTransformation, Params, State, Updates, apply_updates, call_update
from gradxform.kernels._build import PROGRAM_STEP, register_loop

# Opcodes, as in steps.cc.
_UNARY = {
    "copy": 0, "copy_p": 0, "neg": 1, "abs": 2, "sign": 3, "sqrt": 4, "rsqrt": 5, "exp": 6,
    "log": 7, "log1p": 8, "expm1": 9, "tanh": 10, "logistic": 11, "floor": 12, "ceil": 13,
    "is_finite": 14, "not": 15, "sin": 18, "cos": 19, "exp2": 20, "cbrt": 21,
}  # fmt: skip
_ROUND = {0: 16, 1: 17}  # lax.RoundingMethod: away from zero, to nearest even
_BINARY = {
    "add": 32, "sub": 33, "mul": 34, "div": 35, "max": 36, "min": 37, "pow": 38, "gt": 39,
    "ge": 40, "lt": 41, "le": 42, "eq": 43, "ne": 44, "and": 45, "or": 46, "atan2": 47,
    "rem": 48, "xor": 49,
}  # fmt: skip
_SELECT, _CLAMP = 64, 65
_MUL, _DIV, _NE = _BINARY["mul"], _BINARY["div"], _BINARY["ne"]
_POW_HALF, _POW_MINUS_HALF = 22, 23
# Operations that the compiled loops can only do by calling libm once per element, where
# XLA has vectorized polynomials: 4 to 20 times slower per element on an x86 CPU, more than
# the memory passes a program saves. A component that needs one is left to XLA.
_LIBM = {_UNARY[n] for n in ("exp", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "exp2", "cbrt")}
_LIBM |= {_BINARY[n] for n in ("pow", "atan2", "rem")}
_FUSE_LIBM = False  # tests set it, to check those operations in the loops and the interpreter
_ELEMENTWISE = {*_UNARY, *_BINARY, "round", "select_n", "clamp", "integer_pow", "square"}
_ALIASES = {"broadcast_in_dim", "convert_element_type", "reshape"}

# Call primitives whose body is inlined, so that elementwise work inside helpers such as
# ``jnp.where`` or ``jnp.clip`` joins the program: primitive name -> the parameter holding it.
_INLINE = {
    "pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr", "checkpoint": "jaxpr", "remat": "jaxpr",
}  # fmt: skip

_HEADER = 5
_WIDTH = 5

# Each opcode as a C++ expression of its operands a, b, c (for the compiled loops); the same
# arithmetic as the interpreter in steps.cc.
_C = {
    0: "{a}", 1: "-{a}", 2: "std::fabs({a})", 3: "({a} > 0.0f ? 1.0f : ({a} < 0.0f ? -1.0f : {a}))",
    4: "std::sqrt({a})", 5: "1.0f / std::sqrt({a})", 6: "std::exp({a})", 7: "std::log({a})",
    8: "std::log1p({a})", 9: "std::expm1({a})", 10: "std::tanh({a})",
    11: "1.0f / (1.0f + std::exp(-{a}))", 12: "std::floor({a})", 13: "std::ceil({a})",
    14: "B(std::isfinite({a}))", 15: "B({a} == 0.0f)", 16: "std::round({a})",
    17: "std::nearbyint({a})", 18: "std::sin({a})", 19: "std::cos({a})", 20: "std::exp2({a})",
    21: "std::cbrt({a})", 22: "PowHalf({a})", 23: "PowMinusHalf({a})",
    32: "{a} + {b}", 33: "{a} - {b}", 34: "{a} * {b}", 35: "{a} / {b}", 36: "Max({a}, {b})",
    37: "Min({a}, {b})", 38: "std::pow({a}, {b})", 39: "B({a} > {b})", 40: "B({a} >= {b})",
    41: "B({a} < {b})", 42: "B({a} <= {b})", 43: "B({a} == {b})", 44: "B({a} != {b})",
    45: "B({a} != 0.0f && {b} != 0.0f)", 46: "B({a} != 0.0f || {b} != 0.0f)",
    47: "std::atan2({a}, {b})", 48: "std::fmod({a}, {b})", 49: "B(({a} != 0.0f) != ({b} != 0.0f))",
    64: "({a} != 0.0f ? {c} : {b})", 65: "Min(Max({b}, {a}), {c})",
}  # fmt: skip
_LOOP_BLOCK = 256

_LOOP_PRELUDE = """// One optimizer step's elementwise program as a loop; generated by gradxform/kernels/_program.py.
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {
inline float Max(float a, float b) { return (a != a || a > b) ? a : b; }
inline float Min(float a, float b) { return (a != a || a < b) ? a : b; }
inline float B(bool x) { return x ? 1.0f : 0.0f; }
inline float PowHalf(float a) { return a == -INFINITY ? INFINITY : std::sqrt(a + 0.0f); }
inline float PowMinusHalf(float a) { return 1.0f / PowHalf(a); }
}  // namespace

"""
# XLA's compile time grows faster than linearly in one custom call's operands, so a large
# tree goes to several calls of at most this many leaves.
LEAVES_PER_CALL = 32

_F32 = np.dtype(np.float32)
_BOOL = np.dtype(np.bool_)


class _Val:
    """One value of the flattened step: its abstract value, and for constants and literals
    the value itself."""

    __slots__ = ("aval", "const", "literal")

    def __init__(self, aval: Any, const: Any = None, literal: bool = False) -> None:
        self.aval = aval
        self.const = const
        self.literal = literal

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.aval.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.aval.dtype)


@dataclass
class _Eqn:
    eqn: Any  # the jaxpr equation (primitive and parameters)
    ins: list[_Val]
    outs: list[_Val]

    @property
    def name(self) -> str:
        return self.eqn.primitive.name


def _flatten(jaxpr: Any, consts: list[Any], args: list[_Val], eqns: list[_Eqn]) -> list[_Val]:
    """Appends ``jaxpr``'s equations to ``eqns`` with calls inlined; returns its outputs."""
    env: dict[Any, _Val] = {v: _Val(v.aval, const=c) for v, c in zip(jaxpr.constvars, consts)}
    env.update(zip(jaxpr.invars, args))

    def read(a: Any) -> _Val:
        if isinstance(a, jcore.Literal):
            return _Val(a.aval, const=a.val, literal=True)
        return env[a]

    for eqn in jaxpr.eqns:
        ins = [read(a) for a in eqn.invars]
        key = _INLINE.get(eqn.primitive.name)
        sub = eqn.params.get(key) if key else None
        outs = None
        if isinstance(sub, jcore.ClosedJaxpr) and len(sub.jaxpr.invars) == len(ins):
            outs = _flatten(sub.jaxpr, list(sub.consts), ins, eqns)
        elif isinstance(sub, jcore.Jaxpr) and not sub.constvars and len(sub.invars) == len(ins):
            outs = _flatten(sub, [], ins, eqns)
        if outs is None:
            outs = [_Val(v.aval) for v in eqn.outvars]
            eqns.append(_Eqn(eqn, ins, outs))
        env.update(zip(eqn.outvars, outs))
    return [read(a) for a in jaxpr.outvars]


def _is_elementwise(e: _Eqn) -> bool:
    """Whether ``e`` computes an array element by element from arrays of its own shape and
    scalars, in float32 and booleans: the equations a program can hold."""
    if len(e.outs) != 1 or (e.name not in _ELEMENTWISE and e.name not in _ALIASES):
        return False
    out = e.outs[0]
    shape = out.shape
    if shape == () or out.dtype not in (_F32, _BOOL):
        return False
    if not all(x.dtype in (_F32, _BOOL) and x.shape in ((), shape) for x in e.ins):
        return False
    if e.name == "select_n":
        return len(e.ins) == 3 and e.ins[0].dtype == _BOOL
    if e.name in _ALIASES:
        if e.name == "reshape":
            return e.ins[0].shape == shape and e.eqn.params.get("dimensions") is None
        return len(e.ins) == 1
    if e.name == "round":
        return int(e.eqn.params["rounding_method"]) in _ROUND
    if e.name in ("and", "or", "xor", "not"):
        return all(x.dtype == _BOOL for x in e.ins)
    return True


class _Program:
    """The register program of one component, and the values it reads and writes."""

    def __init__(self) -> None:
        self.inputs: list[_Val] = []
        self.scalars: list[_Val] = []
        self.scalar_keys: list[Any] = []
        self.outputs: list[_Val] = []
        self.positions: list[int] = []  # where each output goes among the step's outputs
        self.computed: list[bool] = []  # False for an input written out unchanged
        self.eqns: set[int] = set()  # the equations of the step it computes
        self.code: list[list[Any]] = []  # [opcode, dst, a, b, c] with symbolic registers
        self.reg: dict[int, tuple[str, int]] = {}
        self._temps = 0
        self._keep: list[_Val] = []  # values made here: their ids key ``reg`` while they live

    def ref(self, x: _Val) -> tuple[str, int]:
        if id(x) in self.reg:
            return self.reg[id(x)]
        if x.shape == ():
            key = _scalar_key(x)
            if key not in self.scalar_keys:
                self.scalar_keys.append(key)
                self.scalars.append(x)
            r = ("s", self.scalar_keys.index(key))
        else:
            self.inputs.append(x)
            r = ("i", len(self.inputs) - 1)
        self.reg[id(x)] = r
        return r

    def const(self, value: float) -> tuple[str, int]:
        x = _Val(jax.core.ShapedArray((), jnp.float32), const=np.float32(value), literal=True)
        self._keep.append(x)
        return self.ref(x)

    def emit(self, op: int, *args: tuple[str, int]) -> tuple[str, int]:
        dst = ("t", self._temps)
        self._temps += 1
        self.code.append([op, dst, *args])
        return dst

    def add(self, e: _Eqn) -> None:
        name, out = e.name, e.outs[0]
        ins = [self.ref(x) for x in e.ins]
        if name in _ALIASES:
            if name == "convert_element_type" and out.dtype == _BOOL and e.ins[0].dtype != _BOOL:
                r = self.emit(_NE, ins[0], self.const(0.0))
            else:  # a scalar broadcast, an identity reshape, or float32 <-> bool as 0.0 / 1.0
                r = ins[0]
        elif name == "integer_pow":
            r = self._integer_pow(ins[0], int(e.eqn.params["y"]))
        elif name == "pow" and e.ins[1].literal and float(np.asarray(e.ins[1].const)) in _POW_LITERALS:
            # A constant exponent that needs no libm call (Adafactor's v ** -0.5, for one).
            y = float(np.asarray(e.ins[1].const))
            if y == 1.0:
                r = ins[0]
            elif y == 2.0:
                r = self.emit(_MUL, ins[0], ins[0])
            elif y == -1.0:
                r = self.emit(_DIV, self.const(1.0), ins[0])
            else:
                r = self.emit(_POW_HALF if y == 0.5 else _POW_MINUS_HALF, ins[0])
        elif name == "square":
            r = self.emit(_MUL, ins[0], ins[0])
        elif name == "round":
            r = self.emit(_ROUND[int(e.eqn.params["rounding_method"])], ins[0])
        elif name == "select_n":
            r = self.emit(_SELECT, *ins)
        elif name == "clamp":
            r = self.emit(_CLAMP, *ins)
        elif name in _UNARY:
            r = self.emit(_UNARY[name], ins[0])
        else:
            r = self.emit(_BINARY[name], ins[0], ins[1])
        self.reg[id(out)] = r

    def _integer_pow(self, x: tuple[str, int], y: int) -> tuple[str, int]:
        # JAX lowers integer_pow by binary powering; the same multiplications, in the same
        # order, round the same way.
        if y == 0:
            return self.const(1.0)
        n, acc = abs(y), None
        while n:
            if n & 1:
                acc = x if acc is None else self.emit(_MUL, acc, x)
            n >>= 1
            if n:
                x = self.emit(_MUL, x, x)
        assert acc is not None
        return self.emit(_DIV, self.const(1.0), acc) if y < 0 else acc

    def encode(self) -> tuple[tuple[int, ...], int]:
        """The program as int32s (see steps.cc), with temporaries reused once dead, and the
        number of temporaries it needs."""
        n_in, n_s = len(self.inputs), len(self.scalars)
        out_regs = [self.reg[id(x)] for x in self.outputs]
        last: dict[tuple[str, int], int] = {}
        for k, ins in enumerate(self.code):
            for r in ins[2:]:
                last[r] = k
        for r in out_regs:
            last[r] = len(self.code)
        free: list[int] = []
        phys: dict[tuple[str, int], int] = {}
        n_temps = 0

        def number(r: tuple[str, int]) -> int:
            kind, k = r
            return k if kind == "i" else n_in + k if kind == "s" else n_in + n_s + phys[r]

        code: list[int] = []
        for k, (op, dst, *args) in enumerate(self.code):
            if free:
                phys[dst] = free.pop()
            else:
                phys[dst], n_temps = n_temps, n_temps + 1
            regs = [number(a) for a in args] + [0] * (3 - len(args))
            code += [op, number(dst), *regs]
            for a in set(args):  # operands whose last use this is free their temporary now
                if a[0] == "t" and last.get(a) == k:
                    free.append(phys[a])
            if last.get(dst, -1) < k:  # never used: free at once
                free.append(phys[dst])
        header = [n_in, len(out_regs), n_s, n_temps, len(self.code)]
        return tuple(header + [number(r) for r in out_regs] + code), n_temps


_POW_LITERALS = (0.5, -0.5, 1.0, 2.0, -1.0)


def loop_source(code: tuple[int, ...]) -> str:
    """C++ for one encoded program: a loop that keeps every intermediate in registers.

    Results go to a block-sized local buffer first and are copied out after the block, so a
    result aliased to an operand (an in-place update) is written only after that block of
    the operand has been read, whatever order the compiler puts the loop's loads and stores in.
    """
    n_in, n_out, n_s = code[0], code[1], code[2]
    outputs = code[_HEADER : _HEADER + n_out]
    body = code[_HEADER + n_out :]
    name = {r: f"x{r}" for r in range(n_in)}
    name.update({n_in + k: f"c{k}" for k in range(n_s)})
    lines = [
        'extern "C" void gradxform_loop(const float* s, const float* const* in, float* const* out,',
        "                               int64_t lo, int64_t hi) {",
    ]
    lines += [f"  const float c{k} = s[{k}];" for k in range(n_s)]
    lines += [f"  const float* i{j} = in[{j}] + lo;" for j in range(n_in)]
    lines += [f"  float* o{j} = out[{j}] + lo;" for j in range(n_out)]
    lines += [f"  alignas(64) float y{j}[{_LOOP_BLOCK}];" for j in range(n_out)]
    lines += [
        "  for (int64_t at = 0; at < hi - lo; at += %d) {" % _LOOP_BLOCK,
        "    const int64_t n = hi - lo - at < %d ? hi - lo - at : %d;" % (_LOOP_BLOCK, _LOOP_BLOCK),
        "    for (int64_t k = 0; k < n; ++k) {",
    ]
    lines += [f"      const float x{j} = i{j}[at + k];" for j in range(n_in)]
    for k in range(0, len(body), _WIDTH):
        op, dst, a, b, c = body[k : k + _WIDTH]
        expr = _C[op].format(a=name[a], b=name.get(b, "0.0f"), c=name.get(c, "0.0f"))
        lines.append(f"      const float v{k // _WIDTH} = {expr};")
        name[dst] = f"v{k // _WIDTH}"
    lines += [f"      y{j}[k] = {name[r]};" for j, r in enumerate(outputs)]
    lines.append("    }")
    lines += [f"    std::memcpy(o{j} + at, y{j}, sizeof(float) * n);" for j in range(n_out)]
    lines += ["  }", "}", ""]
    return _LOOP_PRELUDE + "\n".join(lines)


def _scalar_key(x: _Val) -> Any:
    if x.literal:  # by bits, so that -0.0 and 0.0 stay apart and equal NaNs are shared
        return ("literal", int(np.asarray(x.const, np.float32).view(np.uint32)))
    return ("value", id(x))


@dataclass
class _Plan:
    invals: list[_Val]
    outvals: list[_Val]
    xla: list[_Eqn]
    programs: list[_Program]
    aliases: dict[int, int]  # output position -> input position it may overwrite


def _plan(eqns: list[_Eqn], invals: list[_Val], outvals: list[_Val], aliases: dict[int, int]) -> _Plan | None:
    """Cuts the flattened step into XLA's part and the fused programs, or None when nothing
    would be fused."""
    producer = {id(o): k for k, e in enumerate(eqns) for o in e.outs}
    elementwise = [_is_elementwise(e) for e in eqns]
    input_ids = {id(x) for x in invals}

    parent: dict[int, int] = {}

    def find(a: int) -> int:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for k, e in enumerate(eqns):
        if elementwise[k]:
            for x in e.ins:
                if x.shape != ():
                    parent[find(id(x))] = find(id(e.outs[0]))

    members: dict[int, list[int]] = {}
    for k, e in enumerate(eqns):
        if elementwise[k]:
            members.setdefault(find(id(e.outs[0])), []).append(k)

    out_position: dict[int, int] = {}
    all_positions: dict[int, list[int]] = {}
    for pos, x in enumerate(outvals):
        out_position.setdefault(id(x), pos)
        all_positions.setdefault(id(x), []).append(pos)
    input_position = {id(x): k for k, x in enumerate(invals)}

    def build(ks: list[int], owned: set[int]) -> _Program | None:
        """The program of one component, or None where the component is better left to XLA.

        The step's outputs that XLA computes (``owned``: it needs them itself) are inputs of
        the program, not results; other values of the component the program recomputes.
        """
        cut = {id(eqns[k].outs[0]) for k in ks if k in owned and id(eqns[k].outs[0]) in out_position}
        ks = [k for k in ks if id(eqns[k].outs[0]) not in cut]
        inside = {id(eqns[k].outs[0]) for k in ks}
        external = [x for k in ks for x in eqns[k].ins if x.shape != () and id(x) not in inside]
        for x in external:
            if x.dtype != _F32:
                return None
            # Arguments of the step, or outputs XLA writes anyway; anything else would have
            # to be materialized first.
            if id(x) not in input_ids and id(x) not in cut:
                return None
        outputs = [eqns[k].outs[0] for k in ks if id(eqns[k].outs[0]) in out_position]
        if not outputs or any(x.dtype != _F32 for x in outputs):
            return None
        # Only the equations the outputs need, in order.
        need = {id(x) for x in outputs}
        chosen = []
        for k in reversed(ks):
            e = eqns[k]
            if id(e.outs[0]) in need:
                chosen.append(k)
                need.update(id(x) for x in e.ins if x.shape != ())
        program = _Program()
        for k in reversed(chosen):
            program.add(eqns[k])
        if not program.inputs:  # a constant fill: nothing to read, nothing to fuse
            return None
        if not _FUSE_LIBM and any(ins[0] in _LIBM for ins in program.code):
            return None
        placed = [(out_position[id(x)], x, True) for x in outputs]
        # An input the step returns as another output (optimistic gradient descent keeps
        # this step's gradient, for example) is written out by the same pass, instead of by
        # a copy of its own.
        for x in {id(x): x for x in external if id(x) in input_position}.values():
            for pos in all_positions.get(id(x), []):
                if aliases.get(pos) != input_position[id(x)]:
                    program.ref(x)
                    placed.append((pos, x, False))
        placed.sort(key=lambda t: t[0])
        program.positions = [t[0] for t in placed]
        program.outputs = [t[1] for t in placed]
        program.computed = [t[2] for t in placed]
        program.eqns = set(chosen)
        return program

    def xla_part(programs: list[_Program]) -> set[int]:
        # XLA evaluates whatever the outputs and the programs' scalars need, except the
        # programs' own outputs.
        fused = {id(x) for p in programs for x, computed in zip(p.outputs, p.computed) if computed}
        seeds = [x for x in outvals if id(x) not in fused]
        seeds += [x for p in programs for x in p.scalars]
        needed: set[int] = set()
        stack = [producer[id(x)] for x in seeds if id(x) in producer]
        stack += [k for k, e in enumerate(eqns) if e.eqn.effects]  # callbacks and the like
        while stack:
            k = stack.pop()
            if k in needed:
                continue
            needed.add(k)
            stack.extend(producer[id(x)] for x in eqns[k].ins if id(x) in producer)
        return needed

    # Where XLA needs a result of a program (Prodigy's gradient sum, whose norm is the
    # distance estimate's denominator; LAMB's moments, behind its norm of the update), XLA
    # computes that output itself and the program reads it: a program that wrote it too
    # would have XLA compute it a second time (measured slower than the plain composition
    # for LAMB on a many-leaf tree). Cheap intermediates both need are computed by both.
    components = list(members.values())
    owned: set[int] = set()

    def clash(programs: list[_Program], needed: set[int]) -> bool:
        return any(producer[id(x)] in needed for p in programs for x, c in zip(p.outputs, p.computed) if c)

    programs = [p for ks in components if (p := build(ks, owned)) is not None]
    needed = xla_part(programs)
    while clash(programs, needed):
        owned |= needed
        programs = [p for ks in components if (p := build(ks, owned)) is not None]
        needed = xla_part(programs)
    if not programs:
        return None
    return _Plan(invals, outvals, [eqns[k] for k in sorted(needed)], programs, aliases)


def plain_step(
    tx: GradientTransformation, grads: Updates, state: State, params: Params, extra: dict[str, Any]
) -> tuple[Params, State]:
    """The composition every kernel path stands for: ``tx.update`` then `apply_updates`."""
    updates, new_state = call_update(tx, grads, state, params, extra)
    return apply_updates(params, updates), new_state


def differentiated(*trees: Any) -> bool:
    """Whether any leaf of ``trees`` is being differentiated (the kernels have no derivative,
    so such a step is the plain composition, whose derivative is ``tx.update``'s)."""
    return any(type(x).__name__ in ("JVPTracer", "LinearizeTracer") for x in jax.tree.leaves(trees))


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, jax.core.Tracer))


def program_step(
    tx: GradientTransformation,
    grads: Updates,
    state: State,
    params: Params,
    extra: dict[str, Any],
) -> Callable[[], tuple[Params, State]] | None:
    """The step with its elementwise part as interpreter programs, as a thunk; None where
    nothing would be fused (or the step is not being traced: eagerly, the plain path is as
    fast and needs no trace)."""
    arrays = (grads, state, params)
    leaves = jax.tree.leaves(arrays)
    if not leaves or not all(_is_array(x) for x in leaves):
        return None
    if not any(isinstance(x, jax.core.Tracer) for x in leaves):
        return None
    extra_leaves, extra_def = jax.tree.flatten(extra)
    dynamic = [k for k, x in enumerate(extra_leaves) if _is_array(x)]
    in_leaves, in_def = jax.tree.flatten((arrays, [extra_leaves[k] for k in dynamic]))
    out_def: list[Any] = []

    def step(*flat: Any) -> list[Any]:
        (g, s, p), dyn = jax.tree.unflatten(in_def, flat)
        xs = list(extra_leaves)
        for k, x in zip(dynamic, dyn):
            xs[k] = x
        out = plain_step(tx, g, s, p, jax.tree.unflatten(extra_def, xs))
        leaves_out, treedef = jax.tree.flatten(out)
        out_def.extend([treedef, jax.tree.structure(out[0]), jax.tree.structure(out[1])])
        return leaves_out

    closed = jax.make_jaxpr(step)(*in_leaves)
    if differentiated(closed.consts):
        return None  # differentiated through a value ``tx`` closes over: no kernel derivative
    invals = [_Val(v.aval) for v in closed.jaxpr.invars]
    eqns: list[_Eqn] = []
    outvals = _flatten(closed.jaxpr, list(closed.consts), invals, eqns)

    # Which input each output may overwrite: new parameters over the parameters, the new
    # state over the state when its structure is unchanged.
    n_g = len(jax.tree.leaves(grads))
    n_s = len(jax.tree.leaves(state))
    n_p = len(jax.tree.leaves(params))
    aliases = {k: n_g + n_s + k for k in range(n_p)}
    new_params_def, new_state_def = out_def[1:3]
    if new_state_def == jax.tree.structure(state):
        aliases.update({n_p + k: n_g + k for k in range(n_s)})
    if new_params_def != jax.tree.structure(params):
        aliases = {}

    plan = _plan(eqns, invals, outvals, aliases)
    if plan is None:
        return None

    def fused() -> tuple[Params, State]:
        return jax.tree.unflatten(out_def[0], _run(plan, in_leaves))

    return fused


def _run(plan: _Plan, args: list[Any]) -> list[Any]:
    """Evaluates a plan: XLA's part equation by equation, then the programs' kernel calls."""
    env: dict[int, Any] = {id(v): x for v, x in zip(plan.invals, args)}

    def read(x: _Val) -> Any:
        return env[id(x)] if id(x) in env else x.const

    for e in plan.xla:
        # As jax.core.eval_jaxpr binds an equation (older JAX also returns sub-functions).
        params = e.eqn.primitive.get_bind_params(e.eqn.params)
        subfuns, params = params if isinstance(params, tuple) else ((), params)
        ctx = getattr(getattr(e.eqn, "ctx", None), "manager", None)
        with ctx if ctx is not None else contextlib.nullcontext():
            outs = e.eqn.primitive.bind(*subfuns, *(read(x) for x in e.ins), **params)
        if not e.eqn.primitive.multiple_results:
            outs = [outs]
        env.update((id(o), x) for o, x in zip(e.outs, outs))

    position = {id(x): k for k, x in enumerate(plan.invals)}
    results: dict[int, Any] = {}  # output position -> its array from a kernel

    groups: dict[tuple[int, ...], list[_Program]] = {}
    for p in plan.programs:
        code, _ = p.encode()
        groups.setdefault(code, []).append(p)
    for code, members in groups.items():
        register_loop(code, loop_source(code))  # else the kernel interprets the program
        program = jnp.asarray(np.asarray(code, np.int32))
        for lo in range(0, len(members), LEAVES_PER_CALL):
            call_members = members[lo : lo + LEAVES_PER_CALL]
            n = len(call_members)
            first = call_members[0]
            if all(p.scalar_keys == first.scalar_keys for p in call_members):
                rows = [first]
            else:
                rows = call_members
            scalars = [jnp.asarray(read(x), jnp.float32) for p in rows for x in p.scalars]
            scalar_operand = jnp.stack(scalars) if scalars else jnp.zeros((0,), jnp.float32)
            n_in = len(first.inputs)
            operands = [read(p.inputs[j]) for j in range(n_in) for p in call_members]
            shapes = [jax.ShapeDtypeStruct(p.outputs[j].shape, jnp.float32) for j in range(len(first.outputs)) for p in call_members]
            alias_map: dict[int, int] = {}
            taken: set[int] = set()
            for j in range(len(first.outputs)):
                for i, p in enumerate(call_members):
                    target = plan.aliases.get(p.positions[j])
                    for jj, x in enumerate(p.inputs):
                        operand = 2 + jj * n + i
                        if target is not None and position.get(id(x)) == target and operand not in taken:
                            alias_map[operand] = j * n + i
                            taken.add(operand)
                            break
            call = jax.ffi.ffi_call(PROGRAM_STEP, shapes, input_output_aliases=alias_map, vmap_method="sequential")
            out = call(program, scalar_operand, *operands)
            for j in range(len(first.outputs)):
                for i, p in enumerate(call_members):
                    results[p.positions[j]] = out[j * n + i]
                    if p.computed[j]:  # the same value may be returned at other positions too
                        env[id(p.outputs[j])] = out[j * n + i]
    return [results[pos] if pos in results else read(x) for pos, x in enumerate(plan.outvals)]
