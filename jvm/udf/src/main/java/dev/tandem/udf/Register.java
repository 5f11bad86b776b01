package dev.tandem.udf;

import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF2;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataTypes;

/** Registers Tandem's SQL functions in an engine session (called from Python through py4j). */
public final class Register {
    private Register() {}

    /**
     * Adds {@code exact_sum(double)}, {@code exact_mean(double)}, and the prefix
     * form of both ({@code exact_sum_state(double)} aggregate,
     * {@code exact_window_sum(state, state)}, {@code exact_window_mean(state, state)};
     * see {@link SparkExactSumState}) to {@code spark}'s SQL functions.
     */
    public static void spark(SparkSession spark) {
        spark.udf().register("exact_sum", functions.udaf(new SparkExactSum(false), Encoders.DOUBLE()));
        spark.udf().register("exact_mean", functions.udaf(new SparkExactSum(true), Encoders.DOUBLE()));
        spark.udf().register("exact_sum_state", functions.udaf(new SparkExactSumState(), Encoders.DOUBLE()));
        spark.udf().register("exact_window_sum",
                (UDF2<byte[], byte[], Double>) SparkExactSumState::windowSum, DataTypes.DoubleType);
        spark.udf().register("exact_window_mean",
                (UDF2<byte[], byte[], Double>) SparkExactSumState::windowMean, DataTypes.DoubleType);
    }
}
