"""The one-hot reader compiles exactly what the prober compiles, bit for bit.

Reference-plus-fast-twin: :class:`Prober` transforms its probe frame through
each model; :class:`OneHotReader` reads the encoders' categories and the
coefficients. On random models of the structures the trainer publishes (its
own builders, with and without a page encoder, base rates and logistic fits
with coefficients from tiny to out of range) and on one-hot pipelines fitted
by sklearn itself, compiled on spaces that grew values the models do not know
and for page lists the models partly know, both give the same intercept,
contributions and page numbers to the last bit (tolerance 0), or both refuse
the model. Models outside the family are left to the prober (None).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from clickrouter.catalogue import PAGE_INPUT
from clickrouter.features import FeatureSpace
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS, profile_frame
from clickrouter.serving.compiler import CompiledModel, NotCompilable, Prober
from clickrouter.serving.loading import model_columns
from clickrouter.serving.onehot import OneHotReader
from clickrouter.training.models import Transformers, base_rate_pipeline, logistic_pipeline
from fakes import POOLS, fitted_pipeline, random_profiles

PAGE_POOL = ["home", "promo", "spring", "b2", "lp-7"]
values = st.text(alphabet="abcxyz é", min_size=1, max_size=4)


@st.composite
def vocabularies(draw: st.DrawFn, min_size: int = 0) -> dict[str, list[str]]:
    """A categorical vocabulary per field, as a cycle's space lists them."""
    return {
        f: draw(st.lists(values, min_size=min_size, max_size=5, unique=True))
        for f in CATEGORICAL_FIELDS
    }


def grown(vocab: dict[str, list[str]], extra: dict[str, list[str]]) -> FeatureSpace:
    """The serving space: the model's values and others, sorted as assembly sorts them."""
    return FeatureSpace({f: sorted(set(vocab[f]) | set(extra[f])) for f in CATEGORICAL_FIELDS})


coefficients = st.one_of(
    st.floats(-1e-3, 1e-3),
    st.floats(-8, 8),
    st.sampled_from([0.0, -0.0, 1.0, 1e-300]),
)


@st.composite
def trainer_models(draw: st.DrawFn, space: FeatureSpace) -> Pipeline:
    """A model as the trainer publishes it on ``space``."""
    pages = tuple(draw(st.lists(st.sampled_from(PAGE_POOL), max_size=4, unique=True)))
    transformer = Transformers(space)(pages if len(pages) > 1 else ())
    width = sum(len(c) for _, enc, _ in transformer.transformers_ for c in enc.categories_)
    if draw(st.booleans()):
        return base_rate_pipeline(transformer, draw(st.floats(1e-6, 0.5)))
    coef = np.array(draw(st.lists(coefficients, min_size=width, max_size=width)))
    if draw(st.integers(0, 9)) == 0:
        coef[draw(st.integers(0, width - 1))] = draw(st.sampled_from([400.0, -900.0]))
    intercept = draw(st.floats(-12, 2))
    return logistic_pipeline(transformer, coef, intercept)


def assert_same(reader: OneHotReader, prober: Prober, model: Any, pages: list[str]) -> None:
    """Both compile ``model`` to the same bits, or both refuse it."""
    columns = model_columns(model)
    try:
        expected: CompiledModel | None = prober.compile(model, columns, pages)
    except NotCompilable:
        expected = None
    if expected is None:
        with pytest.raises(NotCompilable):
            reader.compile(model, columns, pages)
        return
    got = reader.compile(model, columns, pages)
    assert got is not None, "a recognised model must not go to the prober"
    assert np.float64(got.intercept).view(np.uint64) == np.float64(expected.intercept).view(
        np.uint64
    )
    assert np.array_equal(got.contrib.view(np.uint64), expected.contrib.view(np.uint64))
    assert np.array_equal(got.pages.view(np.uint64), expected.pages.view(np.uint64))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), vocab=vocabularies(min_size=1), extra=vocabularies())
def test_trainer_models_compile_as_the_prober_compiles(
    data: st.DataObject, vocab: dict[str, list[str]], extra: dict[str, list[str]]
) -> None:
    trained_on = FeatureSpace(vocab)
    space = grown(vocab, extra)
    reader, prober = OneHotReader(space), Prober(space)
    for _ in range(3):  # several models on one reader and prober: their caches are shared
        model = data.draw(trainer_models(trained_on))
        pages = data.draw(st.lists(st.sampled_from(PAGE_POOL), min_size=1, max_size=5, unique=True))
        assert_same(reader, prober, model, pages)


@st.composite
def fitted_one_hot(draw: st.DrawFn) -> Pipeline:
    """A one-hot pipeline fitted by sklearn on random profiles, some with a page column."""
    fields = draw(
        st.lists(st.sampled_from(CATEGORICAL_FIELDS + NUMERIC_FIELDS), min_size=1, unique=True)
    )
    reads_page = draw(st.booleans())
    inputs = [*fields, PAGE_INPUT] if reads_page else fields
    split = draw(st.booleans())
    groups = [[name] for name in inputs] if split else [inputs]
    parts = [(f"enc{i}", OneHotEncoder(handle_unknown="ignore"), g) for i, g in enumerate(groups)]
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    frame = profile_frame(random_profiles(rng, 80))
    if reads_page:
        frame[PAGE_INPUT] = rng.choice(PAGE_POOL[:3], len(frame)).astype(object)
    labels = rng.random(len(frame)) < 0.4
    labels[:2] = [True, False]
    model = Pipeline(
        [
            ("pre", ColumnTransformer(parts, sparse_threshold=draw(st.sampled_from([0.0, 1.0])))),
            ("clf", LogisticRegression(C=draw(st.sampled_from([0.1, 1.0, 50.0])))),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence on tiny random data
        return model.fit(
            frame[[c for c in (*CATEGORICAL_FIELDS, *NUMERIC_FIELDS, PAGE_INPUT) if c in inputs]],
            labels,
        )


@settings(max_examples=30, deadline=None)
@given(models=st.lists(fitted_one_hot(), min_size=1, max_size=3), extra=vocabularies())
def test_fitted_one_hot_pipelines_compile_as_the_prober_compiles(
    models: list[Pipeline], extra: dict[str, list[str]]
) -> None:
    space = grown({f: list(POOLS[f]) for f in CATEGORICAL_FIELDS}, extra)
    reader, prober = OneHotReader(space), Prober(space)
    for model in models:
        assert_same(reader, prober, model, ["home", "b2", "promo"])


def _fit(model: Any) -> Any:
    frame = profile_frame(random_profiles(np.random.default_rng(3), 80))
    labels = np.arange(len(frame)) % 3 == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(frame, labels)


def _pipeline(
    encoder: Any, final: Any = None, columns: tuple[str, ...] = ("country", "os")
) -> Pipeline:
    pre = ColumnTransformer([("c", encoder, list(columns))])
    return Pipeline([("pre", pre), ("clf", final or LogisticRegression())])


@pytest.mark.parametrize(
    "model",
    [
        _pipeline(OneHotEncoder(handle_unknown="ignore", drop="first")),
        _pipeline(OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5)),
        _pipeline(OneHotEncoder(handle_unknown="ignore", dtype=np.float32)),
        _pipeline(OneHotEncoder(handle_unknown="ignore"), SGDClassifier(loss="log_loss")),
        _pipeline(StandardScaler(), columns=NUMERIC_FIELDS),
        Pipeline(
            [
                (
                    "pre",
                    ColumnTransformer(
                        [
                            ("c", OneHotEncoder(handle_unknown="ignore"), ["country"]),
                            ("n", "passthrough", list(NUMERIC_FIELDS)),
                        ]
                    ),
                ),
                ("clf", LogisticRegression()),
            ]
        ),
    ],
    ids=["drop", "infrequent", "float32", "sgd", "scaler", "passthrough"],
)
def test_other_models_are_left_to_the_prober(model: Any) -> None:
    fitted = _fit(model)
    space = FeatureSpace({f: POOLS[f] for f in CATEGORICAL_FIELDS})
    assert OneHotReader(space).compile(fitted, model_columns(fitted), ["home"]) is None


def test_the_sample_pipeline_is_read() -> None:
    model = fitted_pipeline(4)
    space = FeatureSpace({f: POOLS[f] for f in CATEGORICAL_FIELDS})
    assert_same(OneHotReader(space), Prober(space), model, ["home"])
    assert OneHotReader(space).compile(model, model_columns(model), ["home"]) is not None
