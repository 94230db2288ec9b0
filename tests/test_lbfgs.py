"""ace.fitting.lbfgs: convergence as good as scipy's L-BFGS-B, and a memory that makes segmented and
resumed runs follow the uninterrupted path exactly."""
import json

import numpy as np
import pytest
import scipy.optimize

from ace.fitting.lbfgs import LINE_SEARCH_FAILED, minimise


def rosenbrock(x):
    return scipy.optimize.rosen(x), scipy.optimize.rosen_der(x)


def rosenbrock_start(n=20):
    x = np.full(n, -1.2)
    x[1::2] = 1.0
    return x


def test_converges_on_rosenbrock_in_as_few_iterations_as_scipy():
    x0 = rosenbrock_start()
    result = minimise(rosenbrock, x0, 2000, 1e-9)
    assert result.success and result.message == "gradient below gtol"
    np.testing.assert_allclose(result.x, 1.0, atol=1e-8)
    reference = scipy.optimize.minimize(rosenbrock, x0, jac=True, method="L-BFGS-B",
                                        options={"maxiter": 2000, "gtol": 1e-9, "ftol": 1e-15,
                                                 "maxcor": 30})
    assert result.nit <= 1.5 * reference.nit


def test_segments_through_json_follow_the_uninterrupted_path():
    x0 = rosenbrock_start()
    whole = minimise(rosenbrock, x0, 60, 1e-12)
    memory, x = None, x0
    for _ in range(4):
        part = minimise(rosenbrock, x, 15, 1e-12, memory=memory)
        memory = json.loads(json.dumps(part.memory))  # as a checkpoint stores it
        x = np.zeros_like(x0)  # ignored: the memory holds the point
    np.testing.assert_array_equal(part.x, whole.x)
    assert part.fun == whole.fun


def test_first_step_many_decades_too_long_backs_off():
    """A stiff quadratic: the unit first step overshoots by ~1e7; the search still descends
    and the iterations reach the minimum."""
    curvature = np.array([1e7, 3e6, 1.0])
    target = np.array([1e-4, -2e-4, 0.5])

    def quadratic(x):
        r = x - target
        return 0.5 * r @ (curvature * r), curvature * r

    result = minimise(quadratic, np.zeros(3), 200, 1e-10)
    assert result.success
    np.testing.assert_allclose(result.x, target, rtol=1e-6, atol=1e-12)


def test_stops_when_no_step_lowers_the_loss_and_says_it_did_not_converge():
    # a gradient of the wrong sign: every step along -H g goes uphill
    result = minimise(lambda x: (x @ x, -2 * x), np.ones(3), 50, 1e-12)
    assert not result.success and result.status == LINE_SEARCH_FAILED and result.nit == 0
    assert "line search failed" in result.message
    np.testing.assert_array_equal(result.x, np.ones(3))


@pytest.mark.parametrize("n_iter", [0, 5])
def test_at_the_minimum_or_without_iterations_nothing_moves(n_iter):
    x0 = np.ones(4)
    result = minimise(rosenbrock, x0, n_iter, 1e-9)
    assert result.nit == 0
    np.testing.assert_array_equal(result.x, x0)
