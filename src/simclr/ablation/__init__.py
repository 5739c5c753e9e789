"""The paper's ablation studies (``simclr ablate STUDY``): cells of scaled-down pretraining runs, evaluated on
frozen features, reported beside the paper's numbers."""

from simclr.ablation.runner import AblateOptions, StudyResult, run_study
from simclr.ablation.studies import STUDIES, Cell, Study

__all__ = ["STUDIES", "AblateOptions", "Cell", "Study", "StudyResult", "run_study"]
