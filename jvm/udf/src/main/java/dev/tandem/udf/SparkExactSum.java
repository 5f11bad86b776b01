package dev.tandem.udf;

import org.apache.spark.sql.Encoder;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.expressions.Aggregator;

/**
 * Spark's {@code exact_sum} / {@code exact_mean}: an {@link Aggregator} over
 * {@link ExactSum}, so group-by and window aggregates (including RANGE frames)
 * give the correctly rounded exact sum whatever the row order or partitioning.
 * Nulls are skipped, as SQL's SUM/AVG do; the mean of no values is null.
 * Register it with {@link Register#spark}.
 */
public final class SparkExactSum extends Aggregator<Double, ExactSum, Double> {
    private static final long serialVersionUID = 1L;

    private final boolean mean;

    /** {@code mean=false}: the sum; {@code true}: the sum divided by the count. */
    public SparkExactSum(boolean mean) {
        this.mean = mean;
    }

    @Override
    public ExactSum zero() {
        return new ExactSum();
    }

    @Override
    public ExactSum reduce(ExactSum acc, Double x) {
        if (x != null) acc.add(x);
        return acc;
    }

    @Override
    public ExactSum merge(ExactSum a, ExactSum b) {
        a.merge(b);
        return a;
    }

    @Override
    public Double finish(ExactSum acc) {
        if (!mean) return acc.value();
        return acc.count() == 0 ? null : acc.mean();
    }

    /**
     * Java serialization: Spark keeps the buffer as an object and only
     * serializes it between partial and final aggregation, so the format's
     * speed hardly matters and ExactSum stays free of engine annotations.
     */
    @Override
    public Encoder<ExactSum> bufferEncoder() {
        return Encoders.javaSerialization(ExactSum.class);
    }

    @Override
    public Encoder<Double> outputEncoder() {
        return Encoders.DOUBLE();
    }
}
