package dev.tandem.udf;

import org.apache.spark.sql.Encoder;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.expressions.Aggregator;

/**
 * What Tandem's Spark aggregates over {@link ExactSum} share: the buffer, how
 * values enter it (nulls skipped, as SQL's SUM/AVG do) and how partial buffers
 * merge. Subclasses say what comes out: the rounded sum or mean
 * ({@link SparkExactSum}) or the exact state itself ({@link SparkExactSumState}).
 */
abstract class ExactSumAggregator<OUT> extends Aggregator<Double, ExactSum, OUT> {
    private static final long serialVersionUID = 1L;

    @Override
    public final ExactSum zero() {
        return new ExactSum();
    }

    @Override
    public final ExactSum reduce(ExactSum acc, Double x) {
        if (x != null) acc.add(x);
        return acc;
    }

    @Override
    public final ExactSum merge(ExactSum a, ExactSum b) {
        a.merge(b);
        return a;
    }

    /**
     * Java serialization: Spark keeps the buffer as an object and only
     * serializes it between partial and final aggregation, so the format's
     * speed hardly matters and ExactSum stays free of engine annotations.
     */
    @Override
    public final Encoder<ExactSum> bufferEncoder() {
        return Encoders.javaSerialization(ExactSum.class);
    }
}
