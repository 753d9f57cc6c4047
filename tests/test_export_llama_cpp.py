"""The exported control vector in the real client: llama.cpp (through llama-cpp-python, an optional extra)
steers SmolLM2-135M from the same Q4_1 GGUF file steersearch converts, and moves the way steersearch does.

llama.cpp's file loader (``common_control_vector_load``) lives in its ``common`` library, which
llama-cpp-python does not ship; ``load_control_vector`` below follows it line for line on top of ggml's own
C GGUF parser (``gguf_init_from_file`` in the bundled ``libggml-base``), and the buffer goes to
``llama_set_adapter_cvec``, whose graph adds it after each block. The layer mapping is checked, not assumed:
the same direction written one slot early or late moves llama.cpp's next-token logits less like steersearch's.

``python -m tests.test_export_llama_cpp`` prints the table the README quotes.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from objectives.keywords import KeywordRate
from objectives.testing import FakeBertScorer
from search.cli import main
from search.config import load_config
from search.run import run_search
from search.session import Scorers, load_data, load_run_study, vector_cache
from search.space import Candidate
from steering import Addition, load_model, steer
from steering.catalog import CATALOG, gguf_file
from steering.export import model_hint, write_control_vector
from steering.model import SteerableModel
from tests.helpers import SMALL_CONFIG, config_variant

LAYER, COEFF, NEW_TOKENS = 15, 0.5, 24
"""`" weddings"` / `""` at every position of resid_pre 15 (direction.14), coefficient 0.5 (1 already degenerates)."""
PROMPTS = [
    "I went up to my friend and said",
    "Yesterday afternoon my neighbour told me that",
    "When we sat down, she looked at me and said",
    "The other day I was thinking about how",
    "After lunch, my brother turned to me and said",
    "I have to tell you something:",
    "Last night on the phone, he told me",
    "So here is the thing about it:",
]
WEDDING = KeywordRate("wedding weddings wed marry married marriage bride groom honeymoon".split())


class _GgufInitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.POINTER(ctypes.c_void_p))]


def _ggml(llama_cpp_module: object) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(Path(llama_cpp_module.__file__).parent / "lib" / "libggml-base.so"))  # type: ignore[attr-defined]
    sig = {
        "gguf_init_from_file": ([ctypes.c_char_p, _GgufInitParams], ctypes.c_void_p),
        "gguf_get_n_tensors": ([ctypes.c_void_p], ctypes.c_int64),
        "gguf_get_tensor_name": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_char_p),
        "gguf_get_tensor_type": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_int),
        "gguf_free": ([ctypes.c_void_p], None),
        "ggml_get_tensor": ([ctypes.c_void_p, ctypes.c_char_p], ctypes.c_void_p),
        "ggml_n_dims": ([ctypes.c_void_p], ctypes.c_int),
        "ggml_nelements": ([ctypes.c_void_p], ctypes.c_int64),
        "ggml_get_data_f32": ([ctypes.c_void_p], ctypes.POINTER(ctypes.c_float)),
        "ggml_free": ([ctypes.c_void_p], None),
    }
    for name, (args, res) in sig.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


def load_control_vector(ggml: ctypes.CDLL, path: Path, strength: float = 1.0) -> tuple[int, np.ndarray]:
    """``common_control_vector_load_one``: ``(n_embd, data)`` with ``direction.N`` at ``data[n_embd*(N-1):]``."""
    ctx = ctypes.c_void_p()
    gctx = ggml.gguf_init_from_file(str(path).encode(), _GgufInitParams(False, ctypes.pointer(ctx)))
    assert gctx, f"ggml's GGUF parser rejected {path}"
    n_embd, data = -1, np.zeros(0, dtype=np.float32)
    try:
        for i in range(ggml.gguf_get_n_tensors(gctx)):
            name = ggml.gguf_get_tensor_name(gctx, i).decode()
            head, _, index = name.partition(".")
            assert head == "direction" and index.isdigit(), f"llama.cpp: invalid direction tensor name {name}"
            layer = int(index)
            assert layer != 0, "llama.cpp: invalid (zero) direction tensor layer index"
            assert ggml.gguf_get_tensor_type(gctx, i) == 0, "llama.cpp: invalid (non-F32) direction tensor type"
            tensor = ggml.ggml_get_tensor(ctx, name.encode())
            assert ggml.ggml_n_dims(tensor) == 1, "llama.cpp: invalid (non-1D) direction tensor shape"
            size = ggml.ggml_nelements(tensor)
            assert n_embd in (-1, size), "llama.cpp: direction tensor does not match previous dimensions"
            n_embd = size
            if data.size < n_embd * layer:
                data = np.concatenate([data, np.zeros(n_embd * layer - data.size, dtype=np.float32)])
            src = np.ctypeslib.as_array(ggml.ggml_get_data_f32(tensor), shape=(n_embd,))
            data[n_embd * (layer - 1) : n_embd * layer] += src * strength
    finally:
        ggml.gguf_free(gctx)
        ggml.ggml_free(ctx)
    return n_embd, data


class LlamaCpp:
    """A llama.cpp context on one GGUF model: greedy decoding from token ids, with or without a control vector."""

    def __init__(self, path: Path) -> None:
        from llama_cpp import llama_cpp as lc  # the optional extra; imported only when the test runs

        self.lc = lc
        self.ggml = _ggml(lc)
        lc.llama_backend_init()
        self.model = lc.llama_model_load_from_file(str(path).encode(), lc.llama_model_default_params())
        params = lc.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_threads, params.n_threads_batch = 256, 256, 1, 1
        self.ctx = lc.llama_init_from_model(self.model, params)
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))
        self.n_layer = lc.llama_model_n_layer(self.model)

    def set_control_vector(self, path: Path | None) -> None:
        lc = self.lc
        if path is None:
            assert lc.llama_set_adapter_cvec(self.ctx, None, 0, 0, 0, 0) == 0
            return
        n_embd, data = load_control_vector(self.ggml, path)
        # llama.cpp overwrites only the layers the buffer reaches: pad it, or a shorter vector set after a longer
        # one in the same context keeps the longer one's upper layers
        data = np.concatenate([data, np.zeros(n_embd * self.n_layer - data.size, dtype=np.float32)])
        buf = (ctypes.c_float * data.size)(*data.tolist())
        assert lc.llama_set_adapter_cvec(self.ctx, buf, data.size, n_embd, 1, self.n_layer) == 0

    def greedy(self, tokens: list[int], n_new: int) -> tuple[list[int], np.ndarray]:
        """``n_new`` greedy tokens after ``tokens`` (used as given: no BOS added), and the first step's logits."""
        lc = self.lc
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)
        batch = (lc.llama_token * len(tokens))(*tokens)
        assert lc.llama_decode(self.ctx, lc.llama_batch_get_one(batch, len(tokens))) == 0
        out: list[int] = []
        first = np.zeros(0)
        for step in range(n_new):
            logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,)).copy()
            first = logits if step == 0 else first
            out.append(int(logits.argmax()))
            one = (lc.llama_token * 1)(out[-1])
            assert lc.llama_decode(self.ctx, lc.llama_batch_get_one(one, 1)) == 0
        return out, first

    def close(self) -> None:
        self.lc.llama_free(self.ctx)
        self.lc.llama_model_free(self.model)


@torch.no_grad()
def _ours(
    model: SteerableModel, tokens: list[int], steering: list[Addition], n_new: int
) -> tuple[list[int], np.ndarray]:
    """The same greedy decoding in steersearch (uncached, the steering hooks on every pass)."""
    ids, out, first = list(tokens), [], np.zeros(0)
    with steer(model, steering):
        for step in range(n_new):
            logits = model.hf(torch.tensor([ids], device=model.device)).logits[0, -1].float().cpu().numpy()
            first = logits if step == 0 else first
            out.append(int(logits.argmax()))
            ids.append(out[-1])
    return out, first


def export_from_a_run(model: SteerableModel, root: Path) -> tuple[Path, list[Addition]]:
    """A one-trial SmolLM2 run whose trial is the all-position `" weddings"` addition (its baseline), exported by
    ``steersearch export RUN --format gguf``: the file and the steering the run applies."""
    text = config_variant(
        SMALL_CONFIG,
        ("name: t", "name: llama-cpp\nmodel: {source: smollm2-135m}"),
        ("layer: {low: 0, high: 1}", f"layer: {{low: {LAYER}, high: {LAYER}}}\n  positions: [all]"),
        (
            'pair: ["I talk about weddings constantly", "I do not talk about weddings constantly"], layer: 1, coeff: 4',
            f'pair: [" weddings", ""], layer: {LAYER}, coeff: {COEFF}, positions: all',
        ),
        ("n_trials: 3", "n_trials: 1"),
    )
    (root / "llama-cpp.yaml").write_text(text)
    cfg = load_config(root / "llama-cpp.yaml")
    run = root / "run"
    run_search(cfg, out=run, model=model, scorers=Scorers(bert=FakeBertScorer()), n_trials=1, progress=False)
    assert main(["export", str(run), "--format", "gguf", "-o", str(root / "weddings.gguf")]) == 0
    trial = load_run_study(cfg, run).trials[0]
    steering = Candidate.from_record(trial.user_attrs["candidate"]).steering(
        model, vector_cache(cfg, load_data(cfg), run)
    )
    return root / "weddings.gguf", steering


@dataclass
class Comparison:
    rate: dict[str, float]  # wedding-word rate of the greedy completions: "ours/cpp" (+ = steered)
    first_token_agree: dict[str, float]  # fraction of prompts whose first greedy token is the same in both
    same_text: dict[str, float]  # fraction of prompts whose whole greedy continuation is the same in both
    delta_corr: dict[int, float]  # direction index -> mean corr. of llama.cpp's logit shift with ours (first step)
    texts: dict[str, list[str]]


def compare(root: Path) -> Comparison:
    model = load_model("smollm2-135m")
    exported, steering = export_from_a_run(model, root)
    reader = gguf.GGUFReader(exported)
    ((name, direction),) = [(t.name, torch.from_numpy(np.array(t.data))) for t in reader.tensors]
    index = int(name.split(".")[1])
    assert index == LAYER - 1
    files = {index: exported}
    for n in (index - 1, index + 1):  # the same direction one slot early and one late
        files[n] = root / f"direction_{n}.gguf"
        write_control_vector(files[n], {n: direction}, hint=model_hint(model))
    llama = LlamaCpp(gguf_file(CATALOG["smollm2-135m"]))
    try:
        runs: dict[str, list[tuple[list[int], np.ndarray]]] = {k: [] for k in ("ours", "ours+", "cpp", "cpp+")}
        shifted: dict[int, list[np.ndarray]] = {n: [] for n in sorted(files)}
        for prompt in PROMPTS:
            tokens = model.encode(prompt)  # steersearch's start token and ids, given to llama.cpp as they are
            runs["ours"].append(_ours(model, tokens, [], NEW_TOKENS))
            runs["ours+"].append(_ours(model, tokens, steering, NEW_TOKENS))
            llama.set_control_vector(None)
            runs["cpp"].append(llama.greedy(tokens, NEW_TOKENS))
            for n in shifted:
                llama.set_control_vector(files[n])
                got = llama.greedy(tokens, NEW_TOKENS if n == index else 1)
                shifted[n].append(got[1])
                if n == index:
                    runs["cpp+"].append(got)
    finally:
        llama.close()
    texts = {k: [str(model.tokenizer.decode(toks)) for toks, _ in v] for k, v in runs.items()}
    ours_shift = [s[1] - u[1] for s, u in zip(runs["ours+"], runs["ours"], strict=True)]
    corr = {
        n: float(np.mean([np.corrcoef(s - u[1], o)[0, 1] for s, u, o in zip(v, runs["cpp"], ours_shift, strict=True)]))
        for n, v in shifted.items()
    }
    pairs = {k: list(zip(runs[k], runs[k.replace("ours", "cpp")], strict=True)) for k in ("ours", "ours+")}
    return Comparison(
        rate={k: WEDDING.score(v).rate for k, v in texts.items()},
        first_token_agree={k: float(np.mean([a[0][0] == b[0][0] for a, b in v])) for k, v in pairs.items()},
        same_text={k: float(np.mean([a[0] == b[0] for a, b in v])) for k, v in pairs.items()},
        delta_corr=corr,
        texts=texts,
    )


@pytest.mark.real
@pytest.mark.slow
def test_llama_cpp_steered_by_the_export_moves_like_steersearch(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (pip install steersearch[llama]) is not installed")
    c = compare(tmp_path)
    index = LAYER - 1
    assert c.delta_corr[index] > 0.9  # llama.cpp's logit shift is steersearch's, up to quantisation
    assert c.delta_corr[index] > max(c.delta_corr[index - 1], c.delta_corr[index + 1]) + 0.05  # and not a neighbour's
    assert c.rate["cpp+"] > c.rate["cpp"] and c.rate["ours+"] > c.rate["ours"]  # both move toward weddings
    assert c.first_token_agree["ours"] >= 0.75 and c.first_token_agree["ours+"] >= 0.75


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        result = compare(Path(folder))
    print(
        f"SmolLM2-135M Q4_1, ' weddings' / '' at resid_pre {LAYER}, all positions, coeff {COEFF}, greedy, "
        f"{len(PROMPTS)} prompts x {NEW_TOKENS} tokens"
    )
    print("| | unsteered | steered |\n|---|---|---|")
    for who, key in (("steersearch (float32 from the GGUF)", "ours"), ("llama.cpp (Q4_1)", "cpp")):
        print(f"| {who}: wedding-word rate | {result.rate[key]:.3f} | {result.rate[key + '+']:.3f} |")
    print(
        f"| first greedy token equal in both | {result.first_token_agree['ours']:.3f} | "
        f"{result.first_token_agree['ours+']:.3f} |"
    )
    print(f"| whole continuation equal in both | {result.same_text['ours']:.3f} | {result.same_text['ours+']:.3f} |")
    print(
        "\n| direction index in the file | corr. of llama.cpp's first-step logit shift with steersearch's |\n|---|---|"
    )
    for n, value in result.delta_corr.items():
        print(f"| direction.{n}{' (exported)' if n == LAYER - 1 else ''} | {value:.3f} |")
    for key in ("ours+", "cpp+"):
        print(f"\n{key}: {result.texts[key][0]!r}")
    sys.exit(0)
