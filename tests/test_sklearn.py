"""fastmlp.sklearn: scikit-learn's own estimator checks, and the same training as scikit-learn's MLPs."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import scipy.sparse  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SklearnClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SklearnRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

SAMPLE_WEIGHT_EQUIVALENCE = {
    "check_sample_weight_equivalence_on_dense_data":
        "weighted rows and repeated rows make different mini-batches",
    "check_sample_weight_equivalence_on_sparse_data":
        "weighted rows and repeated rows make different mini-batches",
}


def _expected_failures(estimator):
    # Only a mini-batch smaller than the checks' data splits weighted and repeated rows differently.
    if estimator.solver != "lbfgs" and estimator.batch_size != "auto":
        return SAMPLE_WEIGHT_EQUIVALENCE
    return {}


@parametrize_with_checks(
    [MLPClassifier(max_iter=100), MLPRegressor(max_iter=100),
     MLPClassifier(max_iter=100, batch_size=5), MLPRegressor(max_iter=100, batch_size=5),
     MLPClassifier(solver="lbfgs", max_iter=100), MLPRegressor(solver="lbfgs", max_iter=100)],
    expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ------------------------------------------------------------ same training as scikit-learn
def _digits(n=300):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _all_params(estimator):
    return estimator.coefs_ + estimator.intercepts_


def _fit_both(ours, theirs, X, y, **fit_kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y, **fit_kwargs)
        theirs.fit(X, y, **fit_kwargs)
    return ours, theirs


def _assert_same_training(ours, theirs, rtol=1e-9, atol=1e-11):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.out_activation_ == theirs.out_activation_
    for a, b in zip(_all_params(ours), _all_params(theirs)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
    if hasattr(theirs, "loss_curve_"):
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
        assert ours.t_ == theirs.t_


SOLVER_SETTINGS = [
    dict(solver="adam"),
    dict(solver="adam", alpha=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6),
    dict(solver="sgd", learning_rate_init=0.1),
    dict(solver="sgd", learning_rate_init=0.1, nesterovs_momentum=False),
    dict(solver="sgd", learning_rate_init=0.1, momentum=0.0),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2, power_t=0.3),
    dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.1, n_iter_no_change=1,
         tol=0.5),
    dict(solver="sgd", learning_rate_init=0.05, shuffle=False, batch_size=17),
]


@pytest.mark.parametrize("settings", SOLVER_SETTINGS, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
def test_classifier_trains_as_sklearn_does(settings, activation):
    X, y = _digits()
    kwargs = dict(hidden_layer_sizes=(16, 8), activation=activation, max_iter=6, random_state=3,
                  **settings)
    _assert_same_training(*_fit_both(MLPClassifier(**kwargs), SklearnClassifier(**kwargs), X, y))


@pytest.mark.parametrize("target", ["binary", "multilabel", "multiclass-strings"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_classifier_targets_train_as_sklearn_does(target, solver):
    X, digits = _digits()
    if target == "binary":
        y = digits % 2
    elif target == "multilabel":
        y = np.stack([digits % 2, digits > 4, digits == 3], axis=1).astype(int)
    else:
        y = np.array(["zero", "one", "two"])[digits % 3]
    kwargs = dict(hidden_layer_sizes=(12,), solver=solver, max_iter=8, random_state=0,
                  learning_rate_init=0.05 if solver == "sgd" else 0.001)
    ours, theirs = _fit_both(MLPClassifier(**kwargs), SklearnClassifier(**kwargs), X, y)
    _assert_same_training(ours, theirs, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize("labels,y", [
    ([0, 1], [1, 0, 1, 1]),
    ([3, 7], [7, 7, 7]),                       # one class present, two known
    ([-2, 0, 5], [5, -2, 0, 0, 5]),
    ([0, 1, 2, 3], [2, 2, 1]),                 # classes missing from y
    ([0.0, 1.0, 2.0], [2.0, 0.0, 1.0]),
    ([0, 1, 2], np.array([2, 0, 1], np.uint8)),
    ([False, True], [True, False, False]),
    (["a", "b", "c"], ["c", "a", "b"]),        # strings: through the binarizer
    ([0, 1, 2], [0, 1, 3]),                    # an unknown label: the binarizer's answer
    ([0, 1, 2], [0.0, 1.0, np.nan]),
], ids=["binary", "one-present", "negative", "subset", "floats", "uint8", "bool", "strings",
        "unknown", "nan"])
def test_label_indicator_equals_label_binarizer_transform(labels, y):
    from sklearn.preprocessing import LabelBinarizer
    clf = MLPClassifier()
    clf._label_binarizer = LabelBinarizer().fit(np.asarray(labels))
    y = np.asarray(y)
    try:
        expected = clf._label_binarizer.transform(y).astype(bool)
    except ValueError as error:
        with pytest.raises(ValueError, match=str(error)[:20]):
            clf._indicator(y)
        return
    indicator = clf._indicator(y)
    assert indicator.dtype == bool
    np.testing.assert_array_equal(indicator, expected)


@pytest.mark.parametrize("y", [
    [1, 0, 1, 1], [7, 7, 7], [5, -2, 0, 0, 5], np.array([2, 0, 1], np.uint8),
    np.array([3, 1, 2, 1], np.int32), [2.0, 0.0, 1.0], [True, False], ["c", "a", "b"],
    [[0, 1], [1, 1]], [0.5, 1.5],
], ids=["binary", "one-class", "negative", "uint8", "int32", "floats", "bool", "strings",
        "multilabel", "continuous"])
def test_fitted_binarizer_equals_label_binarizer_fit(y):
    from sklearn.preprocessing import LabelBinarizer

    from fastmlp.sklearn import _fitted_binarizer
    y = np.asarray(y)
    try:
        expected = LabelBinarizer().fit(y)
    except ValueError as error:
        with pytest.raises(ValueError, match=str(error)[:20]):
            _fitted_binarizer(y)
        return
    fitted = _fitted_binarizer(y)
    assert sorted(vars(fitted)) == sorted(vars(expected))
    for name, value in vars(expected).items():
        if isinstance(value, np.ndarray):
            assert type(getattr(fitted, name)) is type(value)
            assert getattr(fitted, name).dtype == value.dtype
            np.testing.assert_array_equal(getattr(fitted, name), value)
        else:
            assert getattr(fitted, name) == value, name


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_regressor_trains_as_sklearn_does(loss, n_outputs, solver):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = np.abs(X[:, :n_outputs] * 0.5 + 0.3 * X[:, 1:2] ** 2)
    if loss == "poisson":
        y = rng.poisson(np.exp(y.clip(0, 2))).astype(float)
    y = y[:, 0] if n_outputs == 1 else y
    kwargs = dict(loss=loss, hidden_layer_sizes=(10,), solver=solver, max_iter=8, random_state=1,
                  learning_rate_init=0.01, alpha=0.001)
    ours, theirs = _fit_both(MLPRegressor(**kwargs), SklearnRegressor(**kwargs), X, y)
    if solver == "lbfgs" and n_outputs > 1 and loss == "squared_error":
        # scikit-learn's L-BFGS minimises a loss whose gradient it does not return; ours
        # minimises the function of that gradient (see fastmlp.sklearn's notes).
        assert ours.loss_ < theirs.loss_curve_[0] if hasattr(theirs, "loss_curve_") else True
        return
    _assert_same_training(ours, theirs, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_sample_weights_train_as_sklearn_does(solver):
    X, y = _digits()
    weights = np.random.default_rng(2).uniform(0, 3, size=y.shape[0])
    weights[::7] = 0
    kwargs = dict(hidden_layer_sizes=(16,), solver=solver, max_iter=5, random_state=0, alpha=0.01,
                  batch_size=50)
    ours, theirs = _fit_both(MLPClassifier(**kwargs), SklearnClassifier(**kwargs), X, y,
                             sample_weight=weights)
    _assert_same_training(ours, theirs, rtol=1e-7, atol=1e-9)


def test_early_stopping_trains_as_sklearn_does():
    X, digits = _digits(400)
    y = digits % 2
    kwargs = dict(hidden_layer_sizes=(16,), early_stopping=True, max_iter=30, random_state=0,
                  n_iter_no_change=3, tol=1e-3, validation_fraction=0.2)
    ours, theirs = _fit_both(MLPClassifier(**kwargs), SklearnClassifier(**kwargs), X, y)
    _assert_same_training(ours, theirs, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
    assert ours.best_validation_score_ == theirs.best_validation_score_
    assert ours.best_loss_ is None


def test_partial_fit_and_warm_start_train_as_sklearn_does():
    X, y = _digits()
    runs = []
    for cls in (MLPClassifier, SklearnClassifier):
        est = cls(hidden_layer_sizes=(16,), solver="sgd", random_state=0, learning_rate_init=0.1)
        for start in range(0, 300, 60):
            est.partial_fit(X[start:start + 60], y[start:start + 60], classes=np.arange(10))
        est.set_params(warm_start=True, max_iter=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        runs.append(est)
    _assert_same_training(*runs, rtol=1e-7, atol=1e-9)


# ------------------------------------------------------------------------ accuracy parity
def _accuracy_pair(make_data, ours, theirs, seeds):
    scores = []
    for seed in seeds:
        X_train, X_test, y_train, y_test = make_data(seed)
        row = []
        for cls in (ours, theirs):
            est = cls(random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est.fit(X_train, y_train)
            row.append(est.score(X_test, y_test))
        scores.append(row)
    return np.array(scores)


def _split(X, y, seed):
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return train_test_split(X, y, random_state=seed, test_size=0.3)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "regression"])
def test_float32_accuracy_matches_sklearn(name):
    """Float32 training (ours and scikit-learn's both keep float32) ends as accurate."""
    if name == "regression":
        X, y = make_regression(n_samples=600, n_features=10, noise=5.0, random_state=0)
        y = y / y.std()
        kinds = [MLPRegressor, SklearnRegressor]
    else:
        X, y = (load_digits if name == "digits" else load_breast_cancer)(return_X_y=True)
        kinds = [MLPClassifier, SklearnClassifier]
    make = [lambda random_state, k=k: k(hidden_layer_sizes=(32,), max_iter=60,
                                        random_state=random_state) for k in kinds]
    scores = _accuracy_pair(lambda seed: _split(X, y, seed), make[0], make[1], seeds=[0, 1, 2])
    ours, theirs = scores.mean(axis=0)
    assert theirs > 0.8
    assert abs(ours - theirs) < 0.02, scores


# ---------------------------------------------------------------------- drop-in behaviour
def test_float32_input_trains_in_float32_and_dtype_overrides():
    X, y = _digits()
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2).fit(X.astype(np.float32), y)
    assert all(c.dtype == np.float32 for c in _all_params(est))
    assert est.predict_proba(X.astype(np.float32)).dtype == np.float32
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, dtype="float32").fit(X, y)
    assert all(c.dtype == np.float32 for c in _all_params(est))
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2).fit(X.astype(int), y)
    assert all(c.dtype == np.float64 for c in _all_params(est))
    with pytest.raises(ValueError, match="dtype"):
        MLPClassifier(dtype="int8").fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_input_trains_as_dense_input(solver):
    X, y = _digits()
    X[X < 0.3] = 0
    kwargs = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=4, random_state=0)
    dense = MLPClassifier(**kwargs).fit(X, y)
    sparse = MLPClassifier(**kwargs).fit(scipy.sparse.csr_matrix(X), y)
    for a, b in zip(_all_params(dense), _all_params(sparse)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sparse.predict_proba(scipy.sparse.csc_matrix(X)),
                               dense.predict_proba(X), rtol=1e-12)


def test_predict_proba_stays_strictly_inside_0_1():
    X, y = _digits()
    for target in (y, y % 2, np.stack([y % 2, y > 4], axis=1)):
        est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(X, target)
        for W in est.coefs_:
            W *= 1e4  # saturate every output
        proba = est.predict_proba(X)
        assert (proba > 0).all() and (proba < 1).all()
        assert np.isfinite(est.predict_log_proba(X)).all()
        if target.ndim == 1:
            np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)


def test_zero_weight_batch_makes_no_update():
    X, y = _digits(100)
    weights = np.ones(100)
    weights[50:] = 0
    kwargs = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=50, shuffle=False,
                  max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = MLPClassifier(**kwargs).fit(X, y, sample_weight=weights)
        half = MLPClassifier(**kwargs).fit(X[:50], y[:50])
    for a, b in zip(_all_params(weighted), _all_params(half)):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(weighted.loss_)


def test_single_class_after_weights_is_an_error_naming_it():
    X, _ = _digits(20)
    y = np.array(["cat", "dog"] * 10)
    with pytest.raises(ValueError, match="only one class, 'dog'"):
        MLPClassifier().fit(X, y, sample_weight=(y == "dog").astype(float))


def test_failed_fit_leaves_the_estimator_as_it_was():
    X, y = _digits()
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    before = [p.copy() for p in _all_params(est)]
    state = dict(n_iter_=est.n_iter_, loss_=est.loss_, curve=list(est.loss_curve_))
    bad_weights = np.ones(y.shape[0])
    bad_weights[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(X, y, sample_weight=bad_weights)
    est.set_params(warm_start=True)
    with pytest.raises(ValueError, match="features"):
        est.fit(X[:, :10], y)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(X_nan, y)
    for a, b in zip(_all_params(est), before):
        np.testing.assert_array_equal(a, b)
    assert dict(n_iter_=est.n_iter_, loss_=est.loss_, curve=est.loss_curve_) == state


def test_pickled_estimator_predicts_and_keeps_training_identically():
    X, y = _digits()
    est = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", random_state=0)
    est.partial_fit(X, y, classes=np.arange(10))
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
    est.partial_fit(X, y)
    copy.partial_fit(X, y)
    for a, b in zip(_all_params(est), _all_params(copy)):
        np.testing.assert_array_equal(a, b)


def test_assigned_coefs_are_used():
    X, y = _digits()
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    reference = SklearnClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X, y)
    est.coefs_ = [c * 2 for c in est.coefs_]
    reference.coefs_ = [c * 2 for c in reference.coefs_]
    np.testing.assert_allclose(est.predict_proba(X), reference.predict_proba(X), rtol=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_works_in_pipeline_grid_search_and_parallel_cross_validation():
    X, y = _digits(200)
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(max_iter=20, random_state=0))
    search = GridSearchCV(pipeline, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2).fit(X, y)
    assert search.best_score_ > 0.5
    scores = cross_val_score(MLPClassifier(max_iter=20, random_state=0), X, y, cv=2, n_jobs=-1)
    serial = cross_val_score(MLPClassifier(max_iter=20, random_state=0), X, y, cv=2)
    np.testing.assert_array_equal(scores, serial)


def test_partial_fit_is_absent_for_lbfgs():
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPRegressor(), "partial_fit")


def test_importing_fastmlp_does_not_import_sklearn():
    code = "import sys, fastmlp; print('sklearn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_missing_sklearn_gives_an_install_hint():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import fastmlp.sklearn\nexcept ImportError as error:\n    print(error)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install fastmlp[sklearn]" in result.stdout


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_negative_sample_weights_train_as_sklearn_does():
    X, y = _digits(100)
    weights = np.random.default_rng(5).uniform(-0.5, 2, size=100)
    kwargs = dict(hidden_layer_sizes=(8,), solver="sgd", max_iter=3, random_state=0, batch_size=20)
    ours, theirs = _fit_both(MLPClassifier(**kwargs), SklearnClassifier(**kwargs), X, y,
                             sample_weight=weights)
    _assert_same_training(ours, theirs, rtol=1e-7, atol=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_with_classes_too_small_to_stratify_splits_as_sklearn_does():
    X = np.random.default_rng(0).normal(size=(30, 4))
    y = np.repeat(np.arange(10), 3)
    kwargs = dict(hidden_layer_sizes=(8,), early_stopping=True, max_iter=5, random_state=0)
    ours, theirs = _fit_both(MLPClassifier(**kwargs), SklearnClassifier(**kwargs), X, y)
    _assert_same_training(ours, theirs, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_prediction_dtype_follows_sklearn():
    X, y = _digits(100)
    est = MLPRegressor(hidden_layer_sizes=(8,), max_iter=2).fit(X.astype(np.float32), y)
    assert est.predict(X.astype(np.float32)).dtype == np.float32
    assert est.predict(X).dtype == np.float64
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2).fit(X.astype(np.float32), y)
    assert clf.predict_proba(X).dtype == np.float64


def test_mismatched_coefs_and_intercepts_are_an_error():
    X, y = _digits(100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1).fit(X, y)
    est.intercepts_ = est.intercepts_[:1]
    with pytest.raises(ValueError, match="intercepts_"):
        est.predict(X)


def test_lbfgs_runs_scipy_on_one_blas_thread_and_restores_the_blas_threads(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.optimize
    controller = threadpoolctl.ThreadpoolController()
    if not controller.select(user_api="blas"):
        pytest.skip("no BLAS library that threadpoolctl can see")
    seen = []
    real = scipy.optimize.minimize

    def minimize(*args, **kwargs):
        seen.append({p["num_threads"] for p in threadpoolctl.threadpool_info()
                     if p["user_api"] == "blas"})
        return real(*args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "minimize", minimize)
    X, y = load_digits(return_X_y=True)
    with controller.limit(limits=2, user_api="blas"):
        before = {p["num_threads"] for p in threadpoolctl.threadpool_info()
                  if p["user_api"] == "blas"}
        MLPClassifier(solver="lbfgs", max_iter=3, random_state=0).fit(X[:200] / 16, y[:200])
        after = {p["num_threads"] for p in threadpoolctl.threadpool_info()
                 if p["user_api"] == "blas"}
    assert seen == [{1}]
    assert after == before
