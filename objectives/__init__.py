"""objectives: completions (and, for damage metrics, a steered model) in, numbers out. No optuna here."""

from objectives.bertscore import BertScorer, BertScoreResult, ReferenceSet
from objectives.compose import METRICS, Constraint, Objective, ObjectiveSpec, Term
from objectives.damage import GoldLogLikelihood, OffTargetKL, PerplexityRatio
from objectives.embedding import EmbeddingSimilarity
from objectives.evaluate import EvalData, Evaluator
from objectives.gold import GoldSet, Split, load_gold_set, load_split
from objectives.items import Items
from objectives.keywords import KeywordRate, KeywordScore
from objectives.text import distinct_n, repetition_rate, text_quality

__all__ = [
    "METRICS",
    "BertScoreResult",
    "BertScorer",
    "Constraint",
    "EmbeddingSimilarity",
    "EvalData",
    "Evaluator",
    "GoldLogLikelihood",
    "GoldSet",
    "Items",
    "KeywordRate",
    "KeywordScore",
    "Objective",
    "ObjectiveSpec",
    "OffTargetKL",
    "PerplexityRatio",
    "ReferenceSet",
    "Split",
    "Term",
    "distinct_n",
    "load_gold_set",
    "load_split",
    "repetition_rate",
    "text_quality",
]
