import numpy as np
import pytest
from scipy import stats

from xaisec.metrics.correlation import spearman_rows


def test_spearman_rows_matches_scipy_per_row():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 1, 8, 8))
    b = a + rng.normal(scale=rng.uniform(0.1, 3, size=(20, 1, 1, 1)), size=a.shape)
    b[3] = np.round(b[3])  # ties
    rho, p = spearman_rows(a, b)
    for i in range(20):
        r = stats.spearmanr(a[i].ravel(), b[i].ravel())
        np.testing.assert_allclose(rho[i], r.statistic, rtol=1e-10)
        np.testing.assert_allclose(p[i], r.pvalue, rtol=1e-6, atol=1e-300)


def test_spearman_rows_edge_cases():
    x = np.arange(10.0)[None]
    rho, p = spearman_rows(x, x)
    assert rho[0] == pytest.approx(1.0) and p[0] == 0.0
    rho, _ = spearman_rows(x, -x)
    assert rho[0] == pytest.approx(-1.0)
    rho, _ = spearman_rows(np.ones((1, 10)), x)
    assert np.isnan(rho[0])
    with pytest.raises(ValueError, match="shape mismatch"):
        spearman_rows(np.ones((2, 4)), np.ones((2, 5)))
