"""Functions on whole pytrees, under Optax's names: ``gx.tree.add``, ``gx.tree.norm``,
``gx.tree.get``, ... (``optax.tree``'s, with the same arguments and results).

Binary operations raise a ``ValueError`` naming their arguments when the trees' structures
differ. The functions live in private modules by family; this module only re-exports them.
"""

from gradxform._tree_build import (
    batch_shape as batch_shape,
    cast as cast,
    cast_like as cast_like,
    dtype as dtype,
    full_like as full_like,
    ones_like as ones_like,
    random_like as random_like,
    split_key_like as split_key_like,
    unwrap_random_key_data as unwrap_random_key_data,
    zeros_like as zeros_like,
)
from gradxform._tree_math import (
    add as add,
    add_scale as add_scale,
    allclose as allclose,
    clip as clip,
    conj as conj,
    div as div,
    max as max,  # noqa: A004
    min as min,  # noqa: A004
    mul as mul,
    norm as norm,
    real as real,
    scale as scale,
    size as size,
    sub as sub,
    sum as sum,  # noqa: A004
    vdot as vdot,
    where as where,
)
from gradxform._tree_moments import (
    bias_correction as bias_correction,
    update_infinity_moment as update_infinity_moment,
    update_moment as update_moment,
    update_moment_per_elem_norm as update_moment_per_elem_norm,
)
from gradxform._tree_paths import (
    NamedTupleKey as NamedTupleKey,
    get as get,
    get_all_with_path as get_all_with_path,
    map_params as map_params,
    set as set,  # noqa: A004
)
