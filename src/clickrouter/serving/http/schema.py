"""The request and response bodies of the HTTP API, as msgspec Structs.

The OpenAPI document (:mod:`.openapi`) is generated from these types with
msgspec's JSON Schema support, so what it promises is what the server decodes
and encodes. Request types state what the server refuses (lengths, ranges,
patterns); a field the server reads leniently has a lenient type. The
decision answer is :class:`~clickrouter.serving.engine.decision.Outcome` and a
campaign :class:`~clickrouter.catalogue.Campaign`, both used as they are.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from clickrouter.catalogue import Campaign
from clickrouter.serving.engine.service import MAX_ID_CHARS

# epoch seconds the server reads: 1970 up to the end of year 9999
MAX_EPOCH = 253402300800
Id = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
Epoch = Annotated[float, msgspec.Meta(ge=0, lt=MAX_EPOCH)]
_DAY = (
    r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])"
    r"|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    r"|02-(0[1-9]|1[0-9]|2[0-8]))"
)
# empty (now), RFC 3339 from 1971 (no offset can put it before 1970) or epoch seconds
# as text below MAX_EPOCH (11 digits); the server reads more forms, this is what to send
TIME_TEXT = (
    r"^(|[0-9]{1,11}(\.[0-9]{1,6})?"
    r"|(197[1-9]|19[89][0-9]|[2-9][0-9]{3})-" + _DAY + r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$"
)
TimeText = Annotated[str, msgspec.Meta(pattern=TIME_TEXT)]
EVENT_TIME = (
    "epoch seconds, or RFC 3339 text (default: now); refused when further ahead of the"
    " server's clock than clock_skew_seconds"
)
Time = Annotated[Epoch | TimeText, msgspec.Meta(description=EVENT_TIME)]
# the zones of the tz database (the tzdata package the server reads too) a ``tz`` may name
ZONES = tuple(sorted(resources.files("tzdata").joinpath("zones").read_text("utf-8").split()))
if TYPE_CHECKING:
    Zone = str
else:  # an enum of names in the document
    Zone = Annotated[
        Literal[ZONES],
        msgspec.Meta(description="IANA time zone (default: the country's main zone)"),
    ]


class Profile(msgspec.Struct, omit_defaults=True):
    """One ad request: who is asking, when. Every field is optional; other fields are ignored.

    The categorical fields are read as text whatever their JSON type.
    """

    ts: Time | None = None
    country: Annotated[
        Any,
        msgspec.Meta(
            description="ISO 3166 alpha-2, alpha-3, numeric code or English name",
            examples=["FR"],
        ),
    ] = None
    device: Annotated[
        Any, msgspec.Meta(description="device family (any text is kept)", examples=["iphone"])
    ] = None
    os: Annotated[Any, msgspec.Meta(description="operating system family", examples=["ios"])] = None
    browser: Annotated[
        Any, msgspec.Meta(description="browser family", examples=["mobile safari"])
    ] = None
    provider: Annotated[
        Any, msgspec.Meta(description="network or carrier", examples=["orange"])
    ] = None
    user_agent: Annotated[
        Any,
        msgspec.Meta(
            description="User-Agent header: fills device, os and browser when they are missing",
            examples=["Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"],
        ),
    ] = None
    tz: Zone | None = None
    local_hour: Annotated[
        Any,
        msgspec.Meta(
            description="0-23: with local_weekday, the local time instead of ts and tz"
            " (ignored unless both are integers in range)",
            examples=[20],
        ),
    ] = None
    local_weekday: Annotated[
        Any, msgspec.Meta(description="0 (Monday) - 6: used with local_hour", examples=[4])
    ] = None


class AdRequest(Profile, omit_defaults=True):
    """A profile to decide for, with the caller's own click id if it has one."""

    click_id: (
        Annotated[
            Id | int,
            msgspec.Meta(
                description="the caller's own click id, echoed and logged (default: a fresh"
                " issued id; a postback can only name an issued one)"
            ),
        ]
        | None
    ) = None


class Sale(msgspec.Struct, omit_defaults=True):
    """A postback's fields in a JSON body (they may come in the query instead)."""

    click_id: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=MAX_ID_CHARS, description="a click id the predictor issued"
        ),
    ]
    revenue: Annotated[float, msgspec.Meta(ge=0)]
    ts: (
        Annotated[
            Epoch | TimeText,
            msgspec.Meta(
                description="when the sale happened (default: now), within clock_skew_seconds"
                " of the server's clock and not before its click"
            ),
        ]
        | None
    ) = None
    campaign_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)] | None = None


class Error(msgspec.Struct):
    """A refused request: what was wrong, in one line."""

    error: str


class Scores(msgspec.Struct, forbid_unknown_fields=True):
    model_version: str
    probabilities: Annotated[
        dict[str, float],
        msgspec.Meta(
            description="offer -> P(sale), best first with top; an offer is named by its"
            " campaign id for the campaign's 'default' page, '<campaign>/<page>' for another"
        ),
    ]


class SaleRecorded(msgspec.Struct, forbid_unknown_fields=True):
    recorded: Literal["sale"]
    id: str
    click_id: str


class Campaigns(msgspec.Struct, forbid_unknown_fields=True):
    model_version: str
    campaigns: list[Campaign]


class SkippedVersion(msgspec.Struct, forbid_unknown_fields=True):
    """A store version passed over at start-up, and why."""

    version: str
    reason: str


class Models(msgspec.Struct, forbid_unknown_fields=True):
    """The live model version: where it came from, when it loaded, what it holds."""

    version: str
    store_version: str | None
    directory: str
    loaded_at: Annotated[str, msgspec.Meta(description="RFC 3339, UTC")]
    load_seconds: float
    n_campaigns: int
    n_offers: Annotated[int, msgspec.Meta(description="(campaign, landing page) pairs")]
    n_compiled: int
    n_generic: int
    skipped: list[str]
    rejected_version: str | None
    skipped_versions: list[SkippedVersion]
    policy: str
    metrics: Annotated[dict[str, Any], msgspec.Meta(description="the manifest's metrics")]


class Reloaded(msgspec.Struct, forbid_unknown_fields=True):
    reloaded: bool
    version: str
    store_version: str | None


class Live(msgspec.Struct, forbid_unknown_fields=True):
    live: bool


class Ready(msgspec.Struct, forbid_unknown_fields=True):
    ready: bool
    error: str | None = None


class TensorMetadata(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    datatype: str
    shape: list[int]


class OfferColumns(msgspec.Struct, forbid_unknown_fields=True):
    offers: Annotated[
        list[str],
        msgspec.Meta(description="the offer of each output column, named as /v1/score names it"),
    ]


class ModelMetadata(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: OfferColumns


class ModelReady(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    ready: bool


class OutputTensor(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    datatype: str
    shape: list[int]
    data: list[float] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(msgspec.Struct, forbid_unknown_fields=True):
    """FP64 ``probabilities`` of shape [n, n_offers]: a column per offer, campaign by
    campaign in /v1/campaigns order, each campaign's landing pages in their order."""

    model_name: str
    model_version: str
    outputs: list[OutputTensor]
    id: str | None = None
