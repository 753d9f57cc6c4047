"""Train the embedded ``tiny-topics`` model: a byte-level BPE tokenizer and a 4-layer GPT-2, from scratch.

Reproducible and seeded; the defaults reproduce the shipped weights in ``steering/embedded/tiny-topics``::

    python -m steering.embedded.train --out steering/embedded/tiny-topics

Runs on CPU (2 threads) in about 20 minutes. Windows always start at a document boundary
(``<|endoftext|>`` at position 0, like a prompt with BOS prepended) and run on into the next document.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from torch.nn import functional as F
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from steering.embedded.corpus import generate_corpus, split_sentences

EOT = "<|endoftext|>"
DEFAULT_OUT = Path(__file__).parent / "tiny-topics"


def train_tokenizer(docs: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE; ``<|endoftext|>`` is added last (id ``vocab_size - 1``) and serves as bos/eos/unk/pad."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    tok.add_special_tokens([AddedToken(EOT, special=True)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT, pad_token=EOT)
    assert fast.convert_tokens_to_ids(EOT) == len(fast) - 1
    assert len(fast.encode(" ", add_special_tokens=False)) == 1
    return fast


def token_stream(tok: PreTrainedTokenizerFast, docs: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``EOT doc EOT doc ... EOT`` as one tensor, and the offsets of the EOT before each document."""
    eot = tok.convert_tokens_to_ids(EOT)
    assert isinstance(eot, int)  # a single special token
    ids: list[int] = []
    starts: list[int] = []
    for enc in tok.backend_tokenizer.encode_batch(docs, add_special_tokens=False):
        starts.append(len(ids))
        ids.append(eot)
        ids.extend(enc.ids)
    ids.append(eot)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(starts, dtype=torch.long)


def windows(stream: torch.Tensor, starts: torch.Tensor, idx: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Rows of ``seq_len + 1`` tokens, each starting at document ``idx[i]``'s EOT."""
    offs = starts[idx].unsqueeze(1) + torch.arange(seq_len + 1)
    return stream[offs]


def lm_loss(model: GPT2LMHeadModel, batch: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=batch[:, :-1]).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--docs", type=int, default=80000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    docs = generate_corpus(args.docs, seed=args.seed)
    heldout_docs = generate_corpus(2000, seed=args.seed + 10_000)
    tok = train_tokenizer(docs, args.vocab)
    stream, starts = token_stream(tok, docs)
    h_stream, h_starts = token_stream(tok, heldout_docs)
    # drop documents too close to the end to fill a window
    starts = starts[starts + args.seq_len + 1 <= len(stream)]
    h_starts = h_starts[h_starts + args.seq_len + 1 <= len(h_stream)]
    n_sentences = len({s for d in docs for s in split_sentences(d)})
    print(
        f"corpus: {len(docs)} docs, {n_sentences} distinct sentences, {len(stream)} tokens; "
        f"vocab {len(tok)}; tokenizer+corpus {time.perf_counter() - t0:.1f}s",
        flush=True,
    )

    eot = tok.convert_tokens_to_ids(EOT)
    assert isinstance(eot, int)  # a single special token
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=256,
        n_layer=4,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(args.seed)
    h_gen = torch.Generator().manual_seed(args.seed + 1)
    h_batch = windows(h_stream, h_starts, torch.randint(len(h_starts), (64,), generator=h_gen), args.seq_len)

    def heldout_loss() -> float:
        model.eval()
        with torch.no_grad():
            loss = sum(lm_loss(model, h_batch[i : i + 16]).item() for i in range(0, len(h_batch), 16))
        model.train()
        return loss / math.ceil(len(h_batch) / 16)

    model.train()
    t_train = time.perf_counter()
    recent: list[float] = []
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        batch = windows(stream, starts, torch.randint(len(starts), (args.batch,), generator=gen), args.seq_len)
        loss = lm_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        recent.append(loss.item())
        recent = recent[-args.log_every :]
        if (step + 1) % args.log_every == 0 or step == 0:
            dt = time.perf_counter() - t_train
            tps = (step + 1) * args.batch * args.seq_len / dt
            print(
                f"step {step + 1}/{args.steps} loss {sum(recent) / len(recent):.4f} lr {lr_at(step):.2e} "
                f"{tps:.0f} tok/s {dt:.0f}s",
                flush=True,
            )
    train_seconds = time.perf_counter() - t_train
    final_train = sum(recent) / len(recent)
    final_heldout = heldout_loss()
    print(f"final train loss {final_train:.4f} held-out loss {final_heldout:.4f}", flush=True)

    model.eval()
    model.half()
    model.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=eot, pad_token_id=eot)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_path.read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(tok_cfg, indent=2) + "\n")
    info = {
        "seed": args.seed,
        "corpus": {
            "docs": len(docs),
            "distinct_sentences": n_sentences,
            "tokens": len(stream),
            "heldout_docs": len(heldout_docs),
        },
        "vocab_size": len(tok),
        "params": n_params,
        "steps": args.steps,
        "batch_shape": [args.batch, args.seq_len],
        "lr": args.lr,
        "warmup": args.warmup,
        "final_train_loss": round(final_train, 4),
        "heldout_loss": round(final_heldout, 4),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "threads": args.threads,
        "torch": torch.__version__,
        "command": "python -m steering.embedded.train " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
