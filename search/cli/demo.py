"""The offline demonstration behind ``make demo``: ActAdd on the embedded tiny-topics model.

It measures ActAdd's own statistic, the fraction of completions that mention a wedding word, unsteered
and steered on the same neutral prompts and seeds, and prints a few completions side by side.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from objectives.gold import load_gold_set, load_split
from objectives.keywords import KeywordRate
from search.cli.display import side_by_side, summary
from search.config import shipped_file
from steering import Addition, GenerationConfig, SteeringVector, generate_candidates, load_model
from steering.model import SteerableModel

CONFIGS = shipped_file()  # the shipped configs/ folder (the repository's, or the installed package's)

DEMO_PROMPTS = 8
"""The demonstration's prompts: the first 8 of the search split (ActAdd-style openers), n = 8 x 8 = 64."""


@dataclass(frozen=True)
class DemoSettings:
    # ActAdd's single-word pair at a layer where it steers the model (see the model cards in the README: on
    # tiny-topics layer 1, coeff 16; on SmolLM2-135M layer 15, coeff 4; on Gemma 3 270M layer 10, coeff 4).
    model: str | None = None  # None: the embedded tiny-topics model
    pair: tuple[str, str] = (" weddings", "")
    layer: int = 1
    coeff: float = 16.0
    generation: GenerationConfig = GenerationConfig(
        max_new_tokens=40, n=8, temperature=1.0, top_p=0.3, freq_penalty=1.0, seed=0
    )


DEMOS = {
    "tiny": DemoSettings(),
    "smollm2-135m": DemoSettings(model="smollm2-135m", layer=15, coeff=4.0),
    "gemma3-270m": DemoSettings(model="gemma3-270m", layer=10, coeff=4.0),
}
"""``steersearch demo --model NAME``: the setting shown for each model."""


@dataclass(frozen=True)
class SteeringEffect:
    unsteered_rate: float
    steered_rate: float
    n: int
    unsteered: list[str]
    steered: list[str]

    @property
    def ratio(self) -> float:
        return self.steered_rate / self.unsteered_rate if self.unsteered_rate else float("inf")


def measure_effect(
    model: SteerableModel, settings: DemoSettings, prompts: tuple[str, ...], keywords: tuple[str, ...]
) -> SteeringEffect:
    """Keyword rate without and with the pair's ActAdd vector, same prompts and seeds, one batched call."""
    vec = SteeringVector.from_pair(model, *settings.pair, layer=settings.layer)
    adds = [[], [Addition(vec, settings.coeff)]]
    plain, steered = generate_candidates(model, list(prompts), adds, settings.generation)
    flat_plain = [s for row in plain for s in row]
    flat_steered = [s for row in steered for s in row]
    metric = KeywordRate(keywords)
    return SteeringEffect(
        unsteered_rate=metric.score(flat_plain).rate,
        steered_rate=metric.score(flat_steered).rate,
        n=len(flat_plain),
        unsteered=flat_plain,
        steered=flat_steered,
    )


def run_demo(settings: DemoSettings = DemoSettings(), *, as_json: bool = False) -> SteeringEffect:
    t0 = time.perf_counter()
    model = load_model(settings.model)
    prompts = load_split(shipped_file("gold/prompts.yaml")).search[:DEMO_PROMPTS]
    keywords = load_gold_set(shipped_file("gold/weddings.yaml")).keywords  # ActAdd's wedding words
    effect = measure_effect(model, settings, prompts, keywords)
    seconds = time.perf_counter() - t0
    if as_json:
        print(
            json.dumps(
                {
                    "unsteered_rate": effect.unsteered_rate,
                    "steered_rate": effect.steered_rate,
                    "n": effect.n,
                    "model": settings.model or "tiny-topics",
                    "pair": settings.pair,
                    "layer": settings.layer,
                    "coeff": settings.coeff,
                    "seconds": round(seconds, 1),
                }
            )
        )
        return effect
    a, b = settings.pair
    where = "the embedded tiny-topics model" if settings.model is None else f"{settings.model} (a real model)"
    print(f"steersearch demo: ActAdd on {where}, offline")
    print(f"pair {a!r} / {b!r}, layer {settings.layer}, coeff {settings.coeff}, front positions")
    print(
        f"wedding-word rate over n={effect.n} completions ({len(prompts)} neutral prompts x "
        f"{settings.generation.n} seeds, the same seeds both ways):"
    )
    k_plain = round(effect.unsteered_rate * effect.n)
    k_steer = round(effect.steered_rate * effect.n)
    print(f"  unsteered  {effect.unsteered_rate:.2f}  ({k_plain}/{effect.n})")
    print(
        f"  steered    {effect.steered_rate:.2f}  ({k_steer}/{effect.n})   x{effect.ratio:.1f}, "
        f"{100 * (effect.steered_rate - effect.unsteered_rate):+.0f} points"
    )
    print()
    show = settings.generation.n  # the first prompt's completions
    info = {
        "model": model.name,
        "pair": list(settings.pair),
        "layer": settings.layer,
        "coeff": settings.coeff,
        "frac": 1.0,
        "positions": "front",
        "seed": settings.generation.seed,
    }
    print(side_by_side(prompts[0], effect.unsteered[:show], effect.steered[:show], summary(info)))
    print(f"done in {seconds:.0f} s")
    return effect
