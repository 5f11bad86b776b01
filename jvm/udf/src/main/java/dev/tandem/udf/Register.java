package dev.tandem.udf;

import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.functions;

/** Registers Tandem's SQL functions in an engine session (called from Python through py4j). */
public final class Register {
    private Register() {}

    /** Adds {@code exact_sum(double)} and {@code exact_mean(double)} to {@code spark}'s SQL functions. */
    public static void spark(SparkSession spark) {
        spark.udf().register("exact_sum", functions.udaf(new SparkExactSum(false), Encoders.DOUBLE()));
        spark.udf().register("exact_mean", functions.udaf(new SparkExactSum(true), Encoders.DOUBLE()));
    }
}
