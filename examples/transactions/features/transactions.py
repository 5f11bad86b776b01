"""Card transactions: per-user and per-merchant features (the example catalog).

Adding a feature is one line in a group below; every engine, the Feast
repository and the parity harness read it from here.
"""

import numpy as np

from transforms import Agg, Catalog, EventSchema, Feature, FeatureGroup, Field, FieldType, row_expression, row_function
from transforms import portable
from transforms.schema import currency_code, finite_non_negative, non_empty

MS_PER_HOUR = 3_600_000

TRANSACTIONS_V1 = EventSchema(
    name="transactions",
    version=1,
    fields=(
        Field("transaction_id", FieldType.STRING, non_empty),
        Field("user_id", FieldType.STRING, non_empty),
        Field("merchant_id", FieldType.STRING, non_empty),
        Field("amount", FieldType.FLOAT64, finite_non_negative),
        Field("currency", FieldType.STRING, currency_code),
        Field("event_time", FieldType.TIMESTAMP_MS),
    ),
    event_id="transaction_id",
    entity_keys=("user_id", "merchant_id"),
    event_time="event_time",
)


@row_function(FieldType.FLOAT64)
def amount_log1p(amount):
    """ln(1 + amount), through log1p so tiny amounts keep their precision.

    transforms.portable's log1p is correctly rounded, so every engine on every CPU gets the same bits.
    """
    return portable.log1p(np.asarray(amount, dtype=np.float64))


@row_expression
def is_night(event_time):
    """1 when the UTC hour of ``event_time`` (epoch ms) is 0-5, else 0.

    Integer arithmetic on epoch milliseconds: no session time zone can shift it,
    and Spark and Flink compute it natively (bit-identical by construction).
    """
    return event_time // MS_PER_HOUR % 24 < 6


USER_FEATURES = FeatureGroup(
    entity="user",
    key="user_id",
    description="Card holder activity",
    features=(
        Feature("user_txn_count_10m", Agg.COUNT, "10m"),
        Feature("user_txn_count_1h", Agg.COUNT, "1h"),
        Feature("user_txn_count_24h", Agg.COUNT, "24h"),
        Feature("user_amount_sum_1h", Agg.SUM, "1h", of="amount"),
        Feature("user_amount_sum_24h", Agg.SUM, "24h", of="amount"),
        Feature("user_amount_max_24h", Agg.MAX, "24h", of="amount"),
        Feature("user_amount_avg_7d", Agg.MEAN, "7d", of="amount"),
        Feature("user_night_txn_count_24h", Agg.SUM, "24h", of="is_night"),
        Feature("user_distinct_merchants_24h", Agg.DISTINCT_COUNT, "24h", of="merchant_id"),
    ),
)

MERCHANT_FEATURES = FeatureGroup(
    entity="merchant",
    key="merchant_id",
    description="Merchant activity",
    features=(
        Feature("merchant_txn_count_1h", Agg.COUNT, "1h"),
        Feature("merchant_amount_avg_24h", Agg.MEAN, "24h", of="amount"),
    ),
)

CATALOG = Catalog(
    schema=TRANSACTIONS_V1,
    row_functions=(amount_log1p, is_night),
    groups=(USER_FEATURES, MERCHANT_FEATURES),
)
