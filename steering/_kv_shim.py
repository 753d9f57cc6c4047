"""Guarded shim for the TransformerBridge KV-cache bug (TransformerLens 4.3 with transformers 5.x).

HF decoder blocks hand their cache to attention as ``cache=...``, but
``AttentionBridge._update_kv_cache`` only reads ``past_key_values`` / ``layer_past``. The cache stays
empty and every cached decode step attends to itself alone, silently.

The shim renames ``cache`` to ``past_key_values`` when, and only when, the bridge would otherwise see
no cache at all. It is idempotent, and it does nothing once upstream reads ``cache`` itself.
``tests/test_kv_cache.py`` pins the behaviour: cached bridge generation, steered and unsteered, must
equal an uncached HF greedy loop, so an upgrade that fixes or breaks this is noticed.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

logger = logging.getLogger(__name__)

_MARK = "_steersearch_kv_shim"


def _upstream_reads_cache_kwarg() -> bool:
    source = inspect.getsource(AttentionBridge._update_kv_cache)
    return '"cache"' in source or "'cache'" in source


def install_kv_cache_shim() -> bool:
    """Patch ``AttentionBridge._update_kv_cache`` once. Returns True if the shim is active."""
    original = AttentionBridge._update_kv_cache
    if getattr(original, _MARK, False):
        return True
    if _upstream_reads_cache_kwarg():
        logger.info("TransformerLens reads the `cache` kwarg itself; KV shim not installed")
        return False

    @functools.wraps(original)
    def _update_kv_cache(self: AttentionBridge, k: Any, v: Any, **kwargs: Any) -> Any:
        if (
            kwargs.get("past_key_values") is None
            and kwargs.get("layer_past") is None
            and kwargs.get("cache") is not None
        ):
            kwargs["past_key_values"] = kwargs.pop("cache")
        return original(self, k, v, **kwargs)

    setattr(_update_kv_cache, _MARK, True)
    AttentionBridge._update_kv_cache = _update_kv_cache  # type: ignore[method-assign]
    return True
