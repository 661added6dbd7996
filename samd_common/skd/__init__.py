"""SKD — sense-dictionary knowledge distillation, all of it in one place (DESIGN.md §6.9).

gather teacher token states (:mod:`~samd_common.skd.senses`) → cluster them into a sense
dictionary (:mod:`~samd_common.skd.clustering`) → train the student to pick the teacher's sense
(:mod:`~samd_common.skd.loss`) → evaluate with the MTEB protocol. The steps are functions of
:mod:`~samd_common.skd.steps`; :mod:`~samd_common.skd.stages` plugs them into
``experiment.run_experiment`` as the SKD registry entry's hooks; :mod:`~samd_common.skd.config`
holds SKD's own settings.
"""

from __future__ import annotations
