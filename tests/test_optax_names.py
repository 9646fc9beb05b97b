"""Every public name gradxform shares with Optax takes Optax's arguments: the same names, in
the same order, with the same defaults, so that code written for Optax runs unchanged."""

from __future__ import annotations

import inspect

import jax.numpy as jnp
import optax
import pytest

import gradxform as gx

# Same name, different thing, on purpose: gradxform's ``bias_correction`` is the
# transformation Adam is composed of (Optax's is a helper on one moment), and ``EmaState`` is
# the state of gradxform's ``ema`` primitive, which keeps its step count in a stage of its own.
DIFFERENT_ON_PURPOSE = {"bias_correction", "EmaState"}
# A state field named as gradxform's other wrappers name theirs (``inner_state``); Optax's
# name reads the same dictionary (``PartitionState.inner_states``, tested below).
FIELD_NAMES = {"PartitionState"}
# Defaults that are equal but not ``==``: new objects built for each call (a line search) or
# two copies of the same private function.
EQUAL_DEFAULTS_BY_REPR = {("lbfgs", "linesearch"), ("scale_by_factored_rms", "decay_rate_fn")}
# Defaults that are members of gradxform's own copy of an Optax enum: equal by member name.
SAME_ENUM_MEMBER = {("microbatch", "accumulator")}


def _shared_callables() -> list[str]:
    names = []
    for name in sorted(set(dir(optax)) & set(dir(gx))):
        if name.startswith("_") or name in DIFFERENT_ON_PURPOSE | FIELD_NAMES:
            continue
        theirs, ours = getattr(optax, name), getattr(gx, name)
        if not (callable(theirs) and callable(ours)):
            continue
        try:
            inspect.signature(theirs), inspect.signature(ours)
        except (TypeError, ValueError):
            continue
        names.append(name)
    return names


def _named(sig: inspect.Signature) -> list[inspect.Parameter]:
    return [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def test_there_are_many_shared_names():
    assert len(_shared_callables()) > 120


@pytest.mark.parametrize("name", _shared_callables())
def test_takes_optaxs_arguments(name):
    theirs = _named(inspect.signature(getattr(optax, name)))
    ours_sig = inspect.signature(getattr(gx, name))
    ours = {p.name: p for p in _named(ours_sig)}
    takes_any_keyword = any(p.kind == p.VAR_KEYWORD for p in ours_sig.parameters.values())
    positional = [p.name for p in theirs if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    ours_positional = [p.name for p in _named(ours_sig) if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    # Optax's positional arguments come first and in order (ours may add more after them).
    assert ours_positional[: len(positional)] == positional or takes_any_keyword, (positional, ours_positional)
    for p in theirs:
        if p.name == "seed" and name == "add_noise":
            continue  # deprecated in Optax in favour of ``key``, which both take
        if p.name not in ours:
            assert takes_any_keyword, f"{name} lacks Optax's argument {p.name!r}"
            continue
        mine = ours[p.name].default
        if (name, p.name) in EQUAL_DEFAULTS_BY_REPR:
            assert (mine is p.empty) == (p.default is p.empty)
            continue
        if (name, p.name) in SAME_ENUM_MEMBER:
            assert type(mine).__name__ == type(p.default).__name__ and mine.name == p.default.name
            continue
        if name == "scale_by_learning_rate" and p.name == "learning_rate":
            continue  # Optax's default None is no learning rate at all; ours must be given
        assert mine is p.default or mine == p.default, f"{name}({p.name}=...): Optax {p.default!r}, ours {mine!r}"


def test_partition_state_reads_under_optaxs_field_name_too():
    tx = gx.partition({"a": gx.sgd(0.1), "b": gx.adam(0.1)}, {"w": "a", "v": "b"})
    state = tx.init({"w": jnp.zeros(2), "v": jnp.ones(3)})
    assert state.inner_states is state.inner_state and set(state.inner_states) == {"a", "b"}


def test_protocol_helpers_behave_as_optaxs():
    params = {"w": jnp.ones(2)}
    assert gx.init_empty_state(params) == gx.EmptyState()
    plain = optax.GradientTransformation(optax.init_empty_state, lambda u, s, p=None: (u, s))
    tx = gx.with_extra_args_support(plain)
    updates, state = tx.update(params, tx.init(params), params, value=1.0)
    assert updates["w"].tolist() == [1.0, 1.0] and state == optax.EmptyState()
    with pytest.raises(TypeError, match="with_extra_args_support"):
        gx.with_extra_args_support(optax.adam)


def test_top_level_tree_helpers_are_the_tree_namespaces():
    assert gx.tree_map_params is gx.tree.map_params
    assert gx.update_moment is gx.tree.update_moment
    assert gx.update_infinity_moment is gx.tree.update_infinity_moment
    assert gx.update_moment_per_elem_norm is gx.tree.update_moment_per_elem_norm
