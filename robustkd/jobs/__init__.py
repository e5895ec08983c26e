"""The jobs layer: what a command does, as a library (docs/architecture.md).

A job takes a request (what the user asked for: flags or a study file, already parsed), plans it (what is
finished, what resumes, what starts), runs it, and returns what it did. The command line, the Python API
(``robustkd.api``) and studies (``robustkd study run``) call the same jobs; none of them plans, skips,
resumes or records on its own.

- ``run_plan``: the plan of one run folder (skip / resume / start) and how it is said.
- ``train``: training from labels (teachers, baselines).
- ``distill``: every distillation run, one student (a cohort of one) or a cohort.
- ``evaluate``: load models, run suites, record every result in the results database.
- ``study``: a declarative study file run stage by stage.
"""
