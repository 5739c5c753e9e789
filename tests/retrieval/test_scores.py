"""Retrieval scores by hand."""

import numpy as np
import pytest
import torch

from simclr.retrieval.scores import retrieval_scores


def test_retrieval_scores_by_hand() -> None:
    index_labels = np.array([0, 0, 1, 1, -1])
    query_labels = np.array([0, 1, -1])
    rows = torch.tensor([[0, 2, 4], [4, 1, 0], [2, 3, 0]])
    m = retrieval_scores(index_labels, query_labels, rows)
    # query 0 (class 0): hits 0 yes, 2 no, 4 no -> p@1 1, p@3 1/3, recall 1
    # query 1 (class 1): 4 no, 1 no, 0 no -> p@1 0, p@3 0, recall 0; query 2 is unlabeled: not counted
    assert m == {"k": 3, "queries": 2, "precision_at_1": 0.5, "precision_at_3": pytest.approx(1 / 6),
                 "recall_at_3": 0.5}
