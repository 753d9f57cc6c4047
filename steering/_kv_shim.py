"""Guarded shim for the TransformerBridge KV-cache bug (TransformerLens 4.3 with transformers 5.x).

HF decoder blocks hand their cache to attention as ``cache=...``, but
``AttentionBridge._update_kv_cache`` only reads ``past_key_values`` / ``layer_past``. The cache stays
empty and every cached decode step attends to itself alone, silently.

The shim renames ``cache`` to ``past_key_values`` when, and only when, the bridge would otherwise see
no cache at all. It is idempotent, and it does nothing once upstream reads ``cache`` itself.
``tests/test_kv_cache.py`` pins the behaviour: cached bridge generation, steered and unsteered, must
equal an uncached HF greedy loop, so an upgrade that fixes or breaks this is noticed.

``pass_cache_by_its_name`` is the same mismatch the other way round, one level up: the bridge's ``generate``
hands the HF model its cache as ``past_key_values``, which transformers 5.24 accepts only with a deprecation
warning on every decode step.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

import torch
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


def pass_cache_by_its_name(model: torch.nn.Module) -> bool:
    """Hand ``model`` a KV cache passed as ``past_key_values`` under the name its ``forward`` reads, ``cache``.

    ``TransformerBridge.generate`` (TransformerLens 4.3) passes HF's own ``Cache`` object back as
    ``past_key_values=``. transformers 5.24 models (GPT-2, Llama, Gemma 3) take ``cache=`` and accept the old
    name through ``deprecate_kwarg`` with a ``FutureWarning`` on every decode step ("removed in 5.40"). This
    forward pre-hook does the same rename without the warning; the cache object is unchanged. It is added only
    where ``forward`` reads ``cache`` and not ``past_key_values``, once per module, and does nothing when the
    caller already uses ``cache``. ``tests/test_kv_cache.py`` checks that cached bridge generation raises no
    such warning, and that the model still warns when called around the hook (so an upgrade is noticed).

    Returns:
        True if the hook is (now) attached.
    """
    if getattr(model, _MARK, False):
        return True
    params = inspect.signature(model.forward).parameters
    if "cache" not in params or "past_key_values" in params:
        return False

    def rename(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if "past_key_values" in kwargs and "cache" not in kwargs:
            kwargs = dict(kwargs)
            kwargs["cache"] = kwargs.pop("past_key_values")
            return args, kwargs
        return None

    model.register_forward_pre_hook(rename, with_kwargs=True)
    setattr(model, _MARK, True)
    return True
