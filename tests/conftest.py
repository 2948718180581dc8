"""Suite-wide settings. Most tests run tiny shapes where thread start-up costs more than it gains (and CI has
2 cores shared with other jobs), so torch runs single-threaded during the tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
