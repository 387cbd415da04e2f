"""Shared setup of the dataset tests (one file per module of
src/collapse_spectroscopy/datasets/).

Their helpers live in tests/dataset_helpers.py (tests/ is on sys.path, see
tests/conftest.py), where tests/workflow/test_readme_commands.py imports them too; its checks are
assertions, rewritten by pytest like a test module's so a failure shows its values.
"""

import pytest

pytest.register_assert_rewrite("dataset_helpers")
