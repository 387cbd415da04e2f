"""LLVM intrinsics for the numba kernels: bit-level ``2**n`` and ``frexp``, and a prefetch.

numba has no scalar bit views; these LLVM bitcasts give them and, unlike libm calls,
vectorize. Each is emitted inline into its caller (an ``@intrinsic`` is code generation).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def pow2_f32(typingctx, n):
    """``2**n`` for an integral float32 ``n`` in [-126, 127]."""
    if n != types.float32:
        return None

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        i = builder.fptosi(args[0], i32)
        i = builder.shl(builder.add(i, ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(i, ir.FloatType())

    return types.float32(types.float32), codegen


@intrinsic
def pow2_f64(typingctx, n):
    """``2**n`` for an integral float64 ``n`` in [-1022, 1023]."""
    if n != types.float64:
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        i = builder.fptosi(args[0], i64)
        i = builder.shl(builder.add(i, ir.Constant(i64, 1023)), ir.Constant(i64, 52))
        return builder.bitcast(i, ir.DoubleType())

    return types.float64(types.float64), codegen


def _frexp_codegen(nbits, nmant, bias, ftype):
    def codegen(context, builder, sig, args):
        it = ir.IntType(nbits)
        b = builder.bitcast(args[0], it)
        e = builder.sub(builder.lshr(b, ir.Constant(it, nmant)), ir.Constant(it, bias))
        m = builder.and_(b, ir.Constant(it, (1 << nmant) - 1))
        m = builder.or_(m, ir.Constant(it, bias << nmant))
        ef, mf = builder.sitofp(e, ftype), builder.bitcast(m, ftype)
        return context.make_tuple(builder, sig.return_type, [ef, mf])

    return codegen


@intrinsic
def frexp1_f32(typingctx, x):
    """``(e, m)`` with ``x = m 2**e``, ``m`` in [1, 2), for a positive normal float32."""
    if x != types.float32:
        return None
    sig = types.UniTuple(types.float32, 2)(types.float32)
    return sig, _frexp_codegen(32, 23, 127, ir.FloatType())


@intrinsic
def frexp1_f64(typingctx, x):
    """``(e, m)`` with ``x = m 2**e``, ``m`` in [1, 2), for a positive normal float64."""
    if x != types.float64:
        return None
    sig = types.UniTuple(types.float64, 2)(types.float64)
    return sig, _frexp_codegen(64, 52, 1023, ir.DoubleType())


@intrinsic
def prefetch(typingctx, arr, row, col):
    """Hint the cache (L2) to fetch ``arr[row, col]``; no effect on results."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2):
        return None

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, value=args[0])
        ptr = cgutils.get_item_pointer(
            context, builder, aryty, ary, [args[1], args[2]], wraparound=False
        )
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        hint = [ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)]  # read, L2
        builder.call(fn, [builder.bitcast(ptr, cgutils.voidptr_t), *hint])
        return context.get_dummy_value()

    return types.none(arr, types.intp, types.intp), codegen
