"""scikit-learn: the same results as its KMeans, its estimator checks and its tools."""

import subprocess
import sys

import numpy as np
import pytest

from fastkm import KMeans

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.cluster import KMeans as SklearnKMeans  # noqa: E402
from sklearn.exceptions import NotFittedError as SklearnNotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

# sklearn's own KMeans fails this check too: random and k-means++ init consume randomness
# differently when rows are repeated or reordered, so the fits differ.
WEIGHT_EQUIVALENCE = ("k-means initialization draws differently from repeated or removed "
                      "rows (scikit-learn's KMeans fails this check too)")
# fastkm raises ValueError when X has fewer distinct points than n_clusters (scikit-learn
# only warns); these checks fit 4 distinct points with the default n_clusters=8.
TOO_FEW_POINTS = "4 distinct points < n_clusters=8: fastkm raises ValueError by design"


def blobs(n, d, k, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(k, d))
    return (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)


# -- the same results as scikit-learn's KMeans -----------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("tol", [0, 1e-4])
@pytest.mark.parametrize("n, d, k", [(2000, 2, 5), (1500, 3, 16), (1000, 8, 10),
                                     (500, 40, 7)])
def test_same_as_sklearn_from_the_same_centres(n, d, k, tol, weighted):
    X = blobs(n, d, k, seed=n + d + k)
    rng = np.random.default_rng(d)
    w = rng.uniform(0.5, 2, size=n) if weighted else None
    init = X[rng.choice(n, size=k, replace=False)]
    ours = KMeans(k, init=init, n_init=1, tol=tol, max_iter=50).fit(X, sample_weight=w)
    theirs = SklearnKMeans(k, init=init, n_init=1, tol=tol, max_iter=50,
                           algorithm="lloyd").fit(X, sample_weight=w)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-10,
                               atol=1e-10)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-10)
    assert ours.n_iter_ == theirs.n_iter_
    # scikit-learn's distances come from |x|^2 - 2 x.c + |c|^2, which loses precision near 0.
    np.testing.assert_allclose(ours.transform(X), theirs.transform(X), rtol=1e-8, atol=1e-5)
    assert ours.score(X) == pytest.approx(theirs.score(X), rel=1e-10)


def test_same_as_sklearn_in_float32():
    X = blobs(3000, 3, 8, seed=1, dtype=np.float32)
    init = X[:8].copy()
    ours = KMeans(8, init=init, n_init=1, tol=0, max_iter=20).fit(X)
    theirs = SklearnKMeans(8, init=init, n_init=1, tol=0, max_iter=20).fit(X)
    assert ours.cluster_centers_.dtype == theirs.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-5,
                               atol=1e-5)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-5)


# -- scikit-learn's estimator checks --------------------------------------------------------

CHECK_ESTIMATOR_NOISE = [
    "ignore:Estimator .*KMeans does not inherit from `sklearn.base.BaseEstimator`:UserWarning",
    "ignore::sklearn.exceptions.SkipTestWarning",
]


@pytest.mark.filterwarnings(*CHECK_ESTIMATOR_NOISE)
def test_check_estimator_with_sklearn_test_parameters():
    # The parameters scikit-learn's own test suite gives its KMeans.
    check_estimator(KMeans(n_clusters=2, n_init=2, max_iter=5),
                    expected_failed_checks={
                        "check_sample_weight_equivalence_on_dense_data": WEIGHT_EQUIVALENCE})


@pytest.mark.filterwarnings(*CHECK_ESTIMATOR_NOISE)
def test_check_estimator_with_defaults():
    check_estimator(KMeans(), expected_failed_checks={
        "check_sample_weights_shape": TOO_FEW_POINTS,
        "check_sample_weights_not_overwritten": TOO_FEW_POINTS,
        "check_sample_weight_equivalence_on_dense_data": WEIGHT_EQUIVALENCE,
    })


@pytest.mark.filterwarnings(*CHECK_ESTIMATOR_NOISE)
def test_check_estimator_minibatch():
    from fastkm import MiniBatchKMeans

    # Random batches: weights are not equivalent to repeated rows (scikit-learn's own
    # MiniBatchKMeans fails this check too).
    check_estimator(MiniBatchKMeans(n_clusters=2, n_init=2, max_iter=5, batch_size=10),
                    expected_failed_checks={
                        "check_sample_weight_equivalence_on_dense_data":
                            "stochastic batches"})


# -- scikit-learn's tools -------------------------------------------------------------------

def test_pipeline():
    X = blobs(500, 3, 4, seed=2) * [1, 10, 100]
    pipe = make_pipeline(StandardScaler(), KMeans(4, random_state=0)).fit(X)
    scaled = StandardScaler().fit_transform(X)
    alone = KMeans(4, random_state=0).fit(scaled)
    np.testing.assert_array_equal(pipe[-1].labels_, alone.labels_)
    np.testing.assert_array_equal(pipe.predict(X), alone.labels_)
    np.testing.assert_allclose(pipe.transform(X), alone.transform(scaled), rtol=1e-12)
    assert pipe.score(X) == pytest.approx(alone.score(scaled), rel=1e-12)
    assert pipe.fit_predict(X).shape == (500,)
    assert pipe.get_feature_names_out().tolist() == ["kmeans0", "kmeans1", "kmeans2",
                                                    "kmeans3"]


def test_clone_get_params_set_params_and_repr():
    init = np.zeros((3, 2))
    km = KMeans(3, init=init, n_init=1, tol=0.0, random_state=4, n_threads=1)
    params = km.get_params()
    assert params.pop("init") is init
    assert params == {"n_clusters": 3, "n_init": 1, "tol": 0.0, "random_state": 4,
                      "n_threads": 1, "max_iter": 300, "algorithm": "auto", "verbose": 0,
                      "callback": None, "swap_trials": 0, "init_size": None}
    params["init"] = init
    copy = clone(km)
    assert copy is not km and not hasattr(copy, "cluster_centers_")
    assert copy.get_params().keys() == params.keys()
    np.testing.assert_array_equal(copy.init, init)
    other = KMeans().set_params(**params)
    assert repr(other) == repr(km)
    assert other.set_params(n_clusters=5) is other and other.n_clusters == 5
    with pytest.raises(ValueError, match="Invalid parameter"):
        km.set_params(n_cluster=3)
    assert repr(KMeans()) == "KMeans()"
    assert repr(KMeans(n_clusters=3, init="random")) == "KMeans(n_clusters=3, init='random')"
    fitted = KMeans(2, random_state=0).fit(blobs(50, 2, 2))
    assert not hasattr(clone(fitted), "labels_")


def test_grid_search_over_n_clusters():
    X = blobs(300, 2, 4, seed=3)
    search = GridSearchCV(KMeans(random_state=0), {"n_clusters": [2, 3, 4, 5]}, cv=3).fit(X)
    # score is minus the inertia, which falls as clusters are added.
    assert search.best_params_ == {"n_clusters": 5}
    scores = search.cv_results_["mean_test_score"]
    assert (np.diff(scores) > 0).all()
    assert search.best_estimator_.cluster_centers_.shape == (5, 2)


def test_not_fitted_error_is_sklearns_when_sklearn_is_loaded():
    with pytest.raises(SklearnNotFittedError):
        KMeans().predict(np.zeros((2, 2)))
    from sklearn.utils.validation import check_is_fitted

    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(KMeans())
    check_is_fitted(KMeans(2, random_state=0).fit(blobs(50, 2, 2)))


def test_not_fitted_error_is_sklearns_even_after_an_earlier_error():
    # An error raised before scikit-learn was imported must not fix the type for later ones.
    code = """
import numpy as np, fastkm
try:
    fastkm.KMeans().predict(np.zeros((2, 2)))
except fastkm.NotFittedError:
    pass
from sklearn.exceptions import NotFittedError
try:
    fastkm.KMeans().predict(np.zeros((2, 2)))
except NotFittedError:
    print("sklearn's")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "sklearn's"


def test_fastkm_does_not_import_sklearn():
    code = ("import sys, numpy as np, fastkm\n"
            "km = fastkm.KMeans(2, random_state=0).fit(np.random.rand(20, 2))\n"
            "km.predict(np.random.rand(5, 2))\n"
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
