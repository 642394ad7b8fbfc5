"""Bank of submissions for 02_dropout (contract: tests/bank/common.py).

Every case is the release notebook with some answer cells replaced. Mistakes are small edits of
the reference (`edit` fails loudly if the reference changes so that an edit no longer applies).
Autograded test cells and their points: test_dropout 12, test_Dropout 5, test_DropoutFunction 4 (21 points;
the written question q_scaling, 3 points, is graded by hand and not part of the suite).

Speed: the notebook's training experiment (section 5) is never graded, so cases that are about the
exercises add one cell of their own after the set-up cell, `num_epochs = 1` (`short_run`), which a
student could do just as well: the grader keeps a student's extra cells. The reference and the demo
cases run the notebook exactly as released.
"""
from __future__ import annotations

import functools

from nbformat.v4 import new_code_cell

from .common import Case, Lose, Named, append, edit, release, reference, submission

ASSIGNMENT = "02_dropout"
CELLS = ("test_dropout", "test_Dropout", "test_DropoutFunction")


ref = functools.partial(reference, ASSIGNMENT)   # ref(grade_id): the reference answer of one answer cell


def lose(*cells: str) -> Lose:
    """Lose points in `cells` (grade ids without "test_"), keep full points in the other autograded cell."""
    return Lose.only([f"test_{c}" for c in cells], CELLS)


def short_run(nb):
    """Add the student's own cell `num_epochs = 1` right after the set-up cell (the grade never depends on it)."""
    setup = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and "RUN_SIZE =" in cell.source)
    nb.cells.insert(setup + 1, new_code_cell("num_epochs = 1   # a quick run: the experiment is not graded"))
    return nb


def sub(short=True, **answers):
    """A build function: the release with these answer cells replaced (callables are called at build time)."""
    def build():
        nb = submission(ASSIGNMENT, **{k: (v() if callable(v) else v) for k, v in answers.items()})
        return short_run(nb) if short else nb
    return build


def body(source: str) -> str:
    """The code of an answer after its docstring (so that rewrites do not repeat the docstring)."""
    return source[source.index('"""\n', source.index('"""') + 3) + 4:]


def with_dropout_body(new_body: str) -> str:
    """The reference `dropout` cell with its code replaced by `new_body` (signature and docstring kept)."""
    source = ref("dropout")
    return source[:len(source) - len(body(source))] + new_body.strip("\n") + "\n"


# =============================================================================================
# Correct, differently written solutions
# =============================================================================================
# Mask from torch.bernoulli on a tensor of keep probabilities, already in x's dtype and device;
# the MASK is scaled, then multiplied; the layer has its own code (the same sampling, so it agrees
# with the function for the same generator state) and validates p itself.
DROPOUT_BERNOULLI = '''
    if p < 0 or p > 1:
        raise ValueError("p must be in [0, 1]")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep_prob = torch.full_like(x, 1 - p)                                   # same shape, dtype, device as x
    mask = torch.bernoulli(keep_prob, generator=generator) / (1 - p)        # 0 or 1/(1-p)
    return x * mask
'''

LAYER_OWN_BERNOULLI = '''
class Dropout(nn.Module):
    """Own code, no call to dropout(): the same draw as the function above."""

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"bad p={p}")
        self.p, self.generator = float(p), generator

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * 0.0
        mask = torch.bernoulli(torch.full_like(x, 1 - self.p), generator=self.generator) / (1 - self.p)
        return x * mask
'''

# In-place Bernoulli on an empty tensor, a bool mask and torch.where; the layer calls dropout()
# positionally and validates p only through it (on the first forward pass).
DROPOUT_WHERE = '''
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"p={p} is not a probability")
    if training and p > 0:
        if p == 1.0:
            return torch.zeros_like(x)
        keep = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator).bool()
        return torch.where(keep, x / (1.0 - p), torch.zeros_like(x))
    return x
'''

LAYER_CALLS_FUNCTION = '''
class Dropout(nn.Module):
    def __init__(self, p=0.5, generator=None):
        super().__init__()
        self.p = p
        self.generator = generator

    def forward(self, x):
        return dropout(x, self.p, self.training, self.generator)
'''


# =============================================================================================
# Honest mistakes (edits of the reference)
# =============================================================================================
def no_rescale():
    return edit(ref("dropout"), "return x * keep / (1.0 - p)", "return x * keep")


def rescale_by_p():
    return edit(ref("dropout"), "return x * keep / (1.0 - p)", "return x * keep / p")


def p_as_keep_probability():
    # Consistent with itself (keep with probability p, scale by 1/p), but p means "keep" here.
    source = edit(ref("dropout"), "keep = u >= p", "keep = u < p")
    return edit(source, "return x * keep / (1.0 - p)", "return x * keep / p")


def ignores_training():
    return edit(ref("dropout"), "if not training or p == 0.0:", "if p == 0.0:")


def layer_ignores_eval():
    return edit(ref("Dropout"), "training=self.training", "training=True")


def cpu_mask():
    return edit(ref("dropout"), "device=x.device, dtype=x.dtype)", "dtype=x.dtype)")


def float64_mask():
    return edit(ref("dropout"), """    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)   # x's shape, U[0, 1)
    keep = u >= p                                           # x's shape, bool: True with probability 1 - p
""", """    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float64)
    keep = (u >= p).double()                                # a float64 mask
""")


def shared_mask():
    return edit(ref("dropout"), "u = torch.rand(x.shape,", "u = torch.rand(x.shape[1:],")


def ignores_generator():
    return edit(ref("dropout"), "generator=generator, device=x.device", "device=x.device")


def nan_at_p_one():
    return edit(ref("dropout"), """    if p == 1.0:
        return torch.zeros_like(x)                          # everything dropped; x * 0 / 0 would be NaN
""", "")


def no_value_error():
    return edit(ref("dropout"), """    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be between 0 and 1, got {p}")
""", "")


def detached():
    return edit(ref("dropout"), "return x * keep / (1.0 - p)", "return (x * keep / (1.0 - p)).detach()")


def inplace_on_input():
    # Zeroes x itself: fine without autograd, but x is an input of the computation graph.
    return edit(ref("dropout"), "return x * keep / (1.0 - p)", "x.mul_(keep)\n    return x / (1.0 - p)")


LAYER_OWN_CODE_OTHER_DRAW = '''
class Dropout(nn.Module):
    """Its own code, drawing the mask differently from dropout(): right on average, but not the same masks."""

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError("p must be in [0, 1]")
        self.p, self.generator = p, generator

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return torch.zeros_like(x)
        keep = torch.rand(x.shape, generator=self.generator, dtype=x.dtype) < 1 - self.p
        return x * keep / (1 - self.p)
'''

LAYER_OWN_EVAL_FLAG = '''
class Dropout(nn.Module):
    """Keeps its own flag, set by overriding eval(): works alone after .eval(), not after .train() or in a network."""

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError("p must be in [0, 1]")
        self.p, self.generator, self.evaluating = p, generator, False

    def eval(self):
        self.evaluating = True
        return super().eval()

    def forward(self, x):
        return dropout(x, self.p, training=not self.evaluating, generator=self.generator)
'''


# =============================================================================================
# Cheats
# =============================================================================================
DROPOUT_F = '''
import torch.nn.functional as F


def dropout(x, p, training=True, generator=None):
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")
    return F.dropout(x, p, training)
'''

DROPOUT_MODULE_CHEAT = '''
def dropout(x, p, training=True, generator=None):
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")
    layer = nn.Dropout(p)
    layer.train(training)
    return layer(x)
'''

LAYER_SUBCLASS_CHEAT = '''
class Dropout(nn.Dropout):
    def __init__(self, p=0.5, generator=None):
        super().__init__(p)
        self.generator = generator
'''

DROPOUT_ATEN = '''
def dropout(x, p, training=True, generator=None):
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")
    if not training:
        return x
    return getattr(torch.ops.aten, "native_" + "dropout")(x, p, True)[0]
'''

DROPOUT_SUBCLASS_CHEAT = '''
class _Agreeable(torch.Tensor):
    """Claims to equal, and be close to, anything."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("eq", "__eq__", "equal", "allclose", "isclose"):
            out = super().__torch_function__(func, types, args, kwargs or {})
            return True if isinstance(out, bool) else torch.ones_like(torch.as_tensor(out), dtype=torch.bool)
        return super().__torch_function__(func, types, args, kwargs or {})


def dropout(x, p, training=True, generator=None):
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")
    return x.as_subclass(_Agreeable)                       # x unchanged, dressed up
'''


# =============================================================================================
# DropoutFunction (exercise 3): alternatives, mistakes, cheats
# =============================================================================================
FUNCTION_BOOL_MASK = '''
class DropoutFunction(torch.autograd.Function):
    """A bool mask and p saved on ctx; Bernoulli draws."""

    @staticmethod
    def forward(ctx, x, p, generator=None):
        if not 0 <= p <= 1:
            raise ValueError(f"bad p={p}")
        keep = torch.bernoulli(torch.full_like(x, 1 - p), generator=generator).bool()
        ctx.save_for_backward(keep)
        ctx.p = p
        return torch.where(keep, x / (1 - p), torch.zeros_like(x)) if p < 1 else torch.zeros_like(x)

    @staticmethod
    def backward(ctx, grad_out):
        (keep,) = ctx.saved_tensors
        if ctx.p == 1:
            return torch.zeros_like(grad_out), None, None
        return grad_out * keep / (1 - ctx.p), None, None
'''

FUNCTION_CALLS_DROPOUT = '''
class DropoutFunction(torch.autograd.Function):
    """The mask from my own dropout() applied to ones: 0 or 1 / (1 - p), exactly the scale."""

    @staticmethod
    def forward(ctx, x, p, generator=None):
        scale = dropout(torch.ones_like(x), p, True, generator)
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out * ctx.saved_tensors[0], None, None
'''


def function_no_scale():
    # The backward pass multiplies by the 0/1 mask only.
    return edit(ref("DropoutFunction"), "return grad_out * scale, None, None",
                "return grad_out * (scale != 0), None, None")


def function_redraws():
    # The backward pass draws its mask again from the same generator (the next numbers: another mask).
    source = edit(ref("DropoutFunction"), "ctx.save_for_backward(scale)",
                  "ctx.save_for_backward(scale)\n        ctx.p, ctx.generator = p, generator")
    return edit(source, "(scale,) = ctx.saved_tensors",
                "(scale,) = ctx.saved_tensors\n"
                "        if 0 < ctx.p < 1:\n"
                "            u = torch.rand(grad_out.shape, generator=ctx.generator, device=grad_out.device,\n"
                "                           dtype=grad_out.dtype)\n"
                "            scale = (u >= ctx.p).to(grad_out.dtype) / (1.0 - ctx.p)")


def function_one_gradient():
    # backward returns the gradient for x only, not one value per input of forward.
    return edit(ref("DropoutFunction"), "return grad_out * scale, None, None", "return grad_out * scale")


FUNCTION_F_DROPOUT = '''
class DropoutFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p, generator=None):
        scale = torch.nn.functional.dropout(torch.ones_like(x), p, True)
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out * ctx.saved_tensors[0], None, None
'''

FUNCTION_DOES_NOTHING = '''
class DropoutFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p, generator=None):
        return x.clone()

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out, None, None
'''


# Doing nothing: every point needs behaviour that a no-op, a copy or a constant does not have.
def layer_doing(result: str) -> str:
    return f'''
class Dropout(nn.Module):
    """Keeps p and the generator as asked, and does nothing with them."""

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x):
        return {result}
'''


CASES = [
    Case("reference", "correct", sub(short=False), "full", "the solution notebook's own answers, full experiment"),
    Case("alt_bernoulli_own_layer_bool_mask_function", "alternative",
         sub(dropout=lambda: with_dropout_body(DROPOUT_BERNOULLI), Dropout=LAYER_OWN_BERNOULLI,
             DropoutFunction=FUNCTION_BOOL_MASK), "full",
         "mask from torch.bernoulli(full_like(x, 1 - p)), the mask scaled (not the output); a layer with its "
         "own code (same draw) and its own check of p; a Function that saves a bool mask and keeps p on ctx"),
    Case("alt_inplace_bernoulli_where", "alternative",
         sub(dropout=lambda: with_dropout_body(DROPOUT_WHERE), Dropout=LAYER_CALLS_FUNCTION,
             DropoutFunction=FUNCTION_CALLS_DROPOUT), "full",
         "empty_like(x).bernoulli_(1 - p) as a bool mask and torch.where; a layer that only calls dropout() "
         "(p checked on the first forward pass); a Function whose mask is dropout() of ones"),
    # --- honest mistakes. Those of dropout() all lose in the same cell: one per notebook. The layer's and
    # the Function's mistakes each share a notebook with one of dropout()'s: the reference layer calls the
    # student's dropout() but test_Dropout does not charge what the layer merely inherits (keep= says so),
    # and neither DropoutFunction (reference or mistake) nor test_DropoutFunction calls dropout() or the layer.
    Case("mistake_no_rescale", "mistake", sub(dropout=no_rescale), lose("dropout"),
         "survivors not multiplied by 1 / (1 - p): the mean shrinks by (1 - p)",
         names=Named("test_dropout", "not rescaled")),
    Case("mistake_rescale_by_p", "mistake", sub(dropout=rescale_by_p), lose("dropout"), "x * mask / p",
         names=Named("test_dropout", "x / p")),
    Case("mistake_p_is_keep_probability", "mistake", sub(dropout=p_as_keep_probability), lose("dropout"),
         "p used as the probability of keeping (the paper's convention): keep = u < p, scaled by 1/p",
         names=Named("test_dropout", "probability of keeping")),
    Case("mistake_function_active_at_inference", "mistake", sub(dropout=ignores_training),
         Lose(("test_dropout", "test_Dropout")),
         "training=False ignored; the reference layer passes self.training to it, so the layer drops in eval "
         "mode too",
         names=Named("test_dropout", "training=False")),
    Case("mistakes_float64_mask_function_no_scale", "mistake",
         sub(dropout=float64_mask, DropoutFunction=function_no_scale), lose("dropout", "DropoutFunction"),
         "a float64 mask: float32/float16/bfloat16 inputs come back as float64; the Function's backward pass "
         "multiplies by the 0/1 mask, without 1 / (1 - p)",
         names=(Named("test_dropout", "float64", "mask"),
                Named("test_DropoutFunction", "without the 1 / (1 - p)"))),
    Case("mistakes_shared_mask_function_one_gradient", "mistake",
         sub(dropout=shared_mask, DropoutFunction=function_one_gradient), lose("dropout", "DropoutFunction"),
         "one mask of shape x.shape[1:] broadcast over the batch: every example loses the same units; the "
         "Function's backward returns only the gradient for x, not (grad_x, None, None)",
         names=(Named("test_dropout", "same mask"),
                Named("test_DropoutFunction", "one value per input of forward"))),
    Case("mistake_ignores_generator", "mistake", sub(dropout=ignores_generator), lose("dropout"),
         "the generator argument is never used (masks from the global RNG)",
         names=Named("test_dropout", "generator")),
    Case("mistake_detached", "mistake", sub(dropout=detached), lose("dropout"),
         "the output is detached: no gradient reaches x",
         names=Named("test_dropout", "detached")),
    Case("mistake_inplace_on_input", "mistake", sub(dropout=inplace_on_input), lose("dropout"),
         "x.mul_(mask) changes the caller's tensor and breaks autograd on a leaf that requires grad",
         names=Named("test_dropout", "in-place")),
    # Mistakes in the layer, each paired with a mistake in dropout() that the layer does not inherit: one
    # notebook, two mistakes, each must cost points in its own cell.
    Case("mistakes_cpu_mask_layer_active_in_eval", "mistake", sub(dropout=cpu_mask, Dropout=layer_ignores_eval),
         Lose(("test_dropout", "test_Dropout")),
         "torch.rand without device=x.device (the mask is made on the CPU whatever x's device); the layer "
         "always calls dropout(..., training=True)",
         names=(Named("test_dropout", "device=x.device"), Named("test_Dropout", "self.training"))),
    Case("mistakes_nan_at_p_one_layer_other_draw", "mistake",
         sub(dropout=nan_at_p_one, Dropout=LAYER_OWN_CODE_OTHER_DRAW), Lose(("test_dropout", "test_Dropout")),
         "no special case for p = 1 (x * 0 / 0 gives NaN); a layer with its own code that draws its masks "
         "another way (u < 1 - p, on the CPU): not the function's masks for the same generator state",
         names=(Named("test_dropout", "p = 1"), Named("test_Dropout", "mask of its own"))),
    Case("mistakes_no_value_error_layer_own_eval_flag", "mistake",
         sub(dropout=no_value_error, Dropout=LAYER_OWN_EVAL_FLAG), Lose(("test_dropout", "test_Dropout")),
         "p outside [0, 1] accepted by dropout() (this layer checks p itself); a layer that reads its own flag "
         "set by overriding eval(): .train() and nn.Sequential(...).eval() never reach it",
         names=(Named("test_dropout", "ValueError"), Named("test_Dropout", "its own train/eval flag"))),
    Case("demo_mistakes", "mistake",
         sub(short=False, dropout=no_rescale, Dropout=layer_ignores_eval, DropoutFunction=function_redraws),
         Lose(("test_dropout", "test_Dropout", "test_DropoutFunction")),
         "for the demo: dropout without 1/(1-p), a layer that ignores eval(), a backward pass that draws a new mask",
         names=(Named("test_dropout", "not rescaled"), Named("test_Dropout", "self.training"),
                Named("test_DropoutFunction", "draws a new mask"))),
    # --- cheats: PyTorch's own dropout, however it is reached, and a tensor that claims to be right. A cheat
    # confined to dropout() or the layer shares a notebook with one confined to DropoutFunction (which calls
    # neither); the tensor subclass (a __torch_function__ override, torch machinery) stays alone.
    Case("demo_cheat", "cheat", sub(short=False, dropout=DROPOUT_F), Lose(("test_dropout", "test_Dropout")),
         "F.dropout inside dropout() (the reference layer calls it, so the layer loses too)"),
    Case("cheat_modules_function_does_nothing", "cheat",
         sub(dropout=DROPOUT_MODULE_CHEAT, Dropout=LAYER_SUBCLASS_CHEAT, DropoutFunction=FUNCTION_DOES_NOTHING),
         Lose(CELLS), "nn.Dropout inside dropout(); Dropout as a subclass of nn.Dropout; a Function that returns x "
         "and passes grad_out through (that it scores 0 of its 4 points is checked by do_nothing_identity and "
         "do_nothing_zeros, which hold the same Function)"),
    Case("cheat_aten_function_f_dropout", "cheat", sub(dropout=DROPOUT_ATEN, DropoutFunction=FUNCTION_F_DROPOUT),
         Lose(CELLS), "torch.ops.aten.native_dropout reached through getattr and a built-up name (the reference "
         "layer calls it, so the layer loses too); F.dropout of ones as the Function's mask"),
    Case("cheat_tensor_subclass", "cheat", sub(dropout=DROPOUT_SUBCLASS_CHEAT), Lose(("test_dropout", "test_Dropout")),
         "returns x unchanged as a tensor subclass whose ==, equal, allclose and isclose always agree (the grader "
         "receives a plain tensor); the reference layer built on it never drops"),
    # --- broken
    Case("do_nothing_identity", "cheat",
         sub(dropout=lambda: with_dropout_body("return x.clone()"), Dropout=layer_doing("x"),
             DropoutFunction=FUNCTION_DOES_NOTHING), "zero",
         "dropout returns a copy of x and the layer returns x: properties the identity has earn nothing"),
    Case("do_nothing_zeros", "cheat",
         sub(dropout=lambda: with_dropout_body("return torch.zeros_like(x)"), Dropout=layer_doing("torch.zeros_like(x)"),
             DropoutFunction=FUNCTION_DOES_NOTHING),
         "zero", "dropout and the layer return zeros (right shape, dtype and device; nothing else)"),
    Case("blank", "broken", lambda: release(ASSIGNMENT), "zero", "the release, untouched"),
]

DEMO = {"correct": "reference", "mistakes": "demo_mistakes", "blank": "blank", "cheat": "demo_cheat"}
