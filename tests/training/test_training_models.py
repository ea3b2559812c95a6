"""Published models: plain sklearn pipelines equal to the trainer's own fit."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

from clickrouter.features import FeatureSpace
from clickrouter.profile import CANONICAL_FIELDS, CATEGORICAL_FIELDS, profile_frame
from clickrouter.training.design import (
    build_space,
    column_offsets,
    design_matrix,
    encode_columns,
)
from clickrouter.training.models import base_rate_pipeline, feature_transformer, logistic_pipeline
from clickrouter.training.publish import space_spec


def _canonical(frame: pd.DataFrame) -> list[dict[str, object]]:
    rows = frame[list(CANONICAL_FIELDS)].to_dict("records")
    return [
        {**r, "local_hour": int(r["local_hour"]), "local_weekday": int(r["local_weekday"])}
        for r in rows
    ]


def test_pipeline_output_equals_the_design_matrix_fit(world: Any) -> None:
    world.add_campaign("a", 0.05)
    train = world.records("a", 3000)
    space = build_space(train.iloc[:2000])  # some later values are out of vocabulary
    n = int(column_offsets(space)[-1])
    coef = np.random.default_rng(1).normal(size=n)
    pipeline = logistic_pipeline(feature_transformer(space), coef, -2.5)
    fresh = train.iloc[2000:]
    mine = expit(design_matrix(encode_columns(fresh, space), n) @ coef - 2.5)
    theirs = pipeline.predict_proba(profile_frame(_canonical(fresh)))[:, 1]
    np.testing.assert_allclose(theirs, mine, rtol=0, atol=1e-12)
    assert list(pipeline.feature_names_in_) == list(CANONICAL_FIELDS)


def test_unseen_values_fall_into_no_column() -> None:
    space = FeatureSpace({"country": ["FR"], "device": ["x"]})
    frame = pd.DataFrame(
        {
            "country": ["FR", "ZZ"],
            "device": ["x", "y"],
            "os": ["a", "b"],
            "browser": ["c", "d"],
            "provider": ["e", "f"],
            "local_hour": [3, 4],
            "local_weekday": [0, 6],
        }
    )
    cols = encode_columns(frame, space)
    assert cols[1, 0] == -1 and cols[0, 0] >= 0
    assert (cols[:, 5:] >= 0).all()


def test_base_rate_model_predicts_its_rate_everywhere(world: Any) -> None:
    space = build_space(pd.DataFrame())
    model = base_rate_pipeline(feature_transformer(space), 3e-6)
    frame = world.traffic(50, 0.0)
    proba = model.predict_proba(profile_frame(_canonical(frame)))[:, 1]
    np.testing.assert_allclose(proba, 3e-6, rtol=1e-12)


def test_space_spec_round_trips() -> None:
    space = FeatureSpace({"country": ["FR", "unknown"], "os": ["ios"]})
    assert FeatureSpace.from_dict(space_spec(space)) == space


def test_served_fast_path_equals_predict_proba(world: Any) -> None:
    from clickrouter.training.served import _generic, one_hot_logistic_tables, served_proba

    world.add_campaign("a", 0.05)
    frame = world.records("a", 3000)
    old_space = build_space(frame.iloc[:300])  # the served model knows fewer values
    new_space = build_space(frame.iloc[300:])
    n = int(column_offsets(old_space)[-1])
    coef = np.random.default_rng(3).normal(size=n)
    served = logistic_pipeline(feature_transformer(old_space), coef, -3.0)
    cols = encode_columns(frame.iloc[2000:], new_space)
    assert one_hot_logistic_tables(served, new_space) is not None
    np.testing.assert_allclose(
        served_proba(served, cols, new_space), _generic(served, cols, new_space), atol=1e-12
    )


def test_a_served_model_of_pages_scores_each_row_with_its_page(world: Any) -> None:
    from clickrouter.training.models import PAGE_INPUT
    from clickrouter.training.served import _generic, one_hot_logistic_tables, served_proba

    world.add_campaign("a", 0.05)
    frame = world.records("a", 1000)
    space = build_space(frame)
    pages = ("fr", "form")
    n = int(column_offsets(space)[-1]) + len(pages)
    coef = np.random.default_rng(4).normal(size=n)
    served = logistic_pipeline(feature_transformer(space, pages), coef, -3.0)
    rows = np.resize(np.array(["form", "fr", "removed"], dtype=object), len(frame))
    cols = encode_columns(frame, space)
    assert one_hot_logistic_tables(served, space) is not None
    fast = served_proba(served, cols, space, rows)
    np.testing.assert_allclose(fast, _generic(served, cols, space, rows), atol=1e-12)
    expected = served.predict_proba(profile_frame(_canonical(frame)).assign(**{PAGE_INPUT: rows}))
    np.testing.assert_allclose(fast, expected[:, 1], atol=1e-12)
    # without page ids every row scores as a page the model does not know
    unknown = served.predict_proba(profile_frame(_canonical(frame)).assign(**{PAGE_INPUT: "?"}))
    np.testing.assert_allclose(served_proba(served, cols, space), unknown[:, 1], atol=1e-12)


def test_other_served_models_are_scored_generically(world: Any) -> None:
    from clickrouter.training.served import one_hot_logistic_tables, served_proba
    from reference.sample_models import template_models

    world.add_campaign("a", 0.05)
    frame = world.records("a", 500)
    space = build_space(frame)
    model = template_models(np.random.default_rng(0))[0]  # one-hot + StandardScaler
    assert one_hot_logistic_tables(model, space) is None
    proba = served_proba(model, encode_columns(frame, space), space)
    expected = model.predict_proba(profile_frame(_canonical(frame)))[:, 1]
    np.testing.assert_allclose(proba, expected, atol=1e-12)


def test_a_transformer_for_another_set_of_pages_is_what_a_fit_gives(world: Any) -> None:
    import pickle

    from sklearn.base import clone

    from clickrouter.training.models import PAGE_INPUT, Transformers

    world.add_campaign("a", 0.05)
    frame = world.records("a", 400)
    space = build_space(frame)
    transformers = Transformers(space)
    assert transformers(("fr", "form")) is transformers(("fr", "form"))
    profiles = profile_frame(_canonical(frame)).assign(
        **{PAGE_INPUT: np.resize(["de", "mobile", "fr", "nowhere"], len(frame))}
    )
    for pages in [("fr", "form"), ("de", "mobile"), ("de", "mobile", "fr")]:
        built, fitted = transformers(pages), feature_transformer(space, pages)
        assert (built.transform(profiles) != fitted.transform(profiles)).nnz == 0
        assert list(built.get_feature_names_out()) == list(fitted.get_feature_names_out())
        # its parameters say the same: a clone refitted by any sklearn user encodes alike
        refit = clone(built).fit(profiles)
        assert (refit.transform(profiles) != fitted.transform(profiles)).nnz == 0
        assert pickle.loads(pickle.dumps(built)).transform(profiles).shape[1] == len(
            fitted.get_feature_names_out()
        )
    assert transformers(()).transform(profile_frame(_canonical(frame))).shape[1] == int(
        column_offsets(space)[-1]
    )


_PAGE_IDS = st.lists(
    st.text("abcdefgh0123", min_size=1, max_size=6), min_size=1, max_size=4, unique=True
).map(tuple)


@settings(max_examples=25, deadline=None)
@given(requests=st.lists(_PAGE_IDS, min_size=1, max_size=5))
def test_a_transformer_pickles_as_a_fresh_fit_in_any_order(
    requests: list[tuple[str, ...]],
) -> None:
    """Fast twin (a copy of the first fit of as many pages) against the reference (a
    fit per set of pages): byte for byte, whichever sets were asked for first, so
    a model file does not depend on the order of a cycle's campaigns or on a
    transformer kept from an earlier cycle."""
    from clickrouter.training.models import Transformers

    space = build_space(pd.DataFrame({f: ["FR", "x"] for f in CATEGORICAL_FIELDS}))
    transformers = Transformers(space)
    references = {
        pages: pickle.dumps(feature_transformer(space, pages), protocol=5) for pages in requests
    }
    for pages in requests:
        assert pickle.dumps(transformers(pages), protocol=5) == references[pages]
    # the copies share parts with the fitted ones: building one changed no other
    assert all(pickle.dumps(transformers(p), protocol=5) == ref for p, ref in references.items())
