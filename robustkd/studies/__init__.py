"""The packaged study files (``robustkd study run NAME``): quick and paper (the main job's profiles), cmkd
(the study of docs/study.md) and smoke (a minutes-long plumbing check on synthetic data). Format:
docs/studies.md; reader: robustkd/jobs/study_file.py."""
