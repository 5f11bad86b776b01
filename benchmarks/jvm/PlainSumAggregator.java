package dev.tandem.bench;

import java.io.Serializable;

import org.apache.spark.sql.Encoder;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.expressions.Aggregator;
import org.apache.spark.sql.functions;

/**
 * Benchmark probe, not product code: a plain (inexact) double sum written exactly
 * like Tandem's SparkExactSum (an {@link Aggregator} registered with
 * {@code functions.udaf}, object buffer, Java-serialization buffer encoder), so
 * that "native SUM -> this" measures Spark's Aggregator plumbing and
 * "this -> exact_sum" measures ExactSum's own work.
 */
public final class PlainSumAggregator extends Aggregator<Double, PlainSumAggregator.Buffer, Double> {
    private static final long serialVersionUID = 1L;

    public static final class Buffer implements Serializable {
        private static final long serialVersionUID = 1L;
        public double sum;
    }

    @Override
    public Buffer zero() {
        return new Buffer();
    }

    @Override
    public Buffer reduce(Buffer acc, Double x) {
        if (x != null) acc.sum += x;
        return acc;
    }

    @Override
    public Buffer merge(Buffer a, Buffer b) {
        a.sum += b.sum;
        return a;
    }

    @Override
    public Double finish(Buffer acc) {
        return acc.sum;
    }

    @Override
    public Encoder<Buffer> bufferEncoder() {
        return Encoders.javaSerialization(Buffer.class);
    }

    @Override
    public Encoder<Double> outputEncoder() {
        return Encoders.DOUBLE();
    }

    /** Adds {@code plain_sum_udaf(double)} to {@code spark}'s SQL functions. */
    public static void register(SparkSession spark) {
        spark.udf().register("plain_sum_udaf", functions.udaf(new PlainSumAggregator(), Encoders.DOUBLE()));
    }
}
