package dev.tandem.udf;

import org.apache.spark.sql.Encoder;
import org.apache.spark.sql.Encoders;

/**
 * Spark's {@code exact_sum} / {@code exact_mean}: an aggregate over
 * {@link ExactSum}, so group-by and window aggregates (including RANGE frames)
 * give the correctly rounded exact sum whatever the row order or partitioning.
 * Nulls are skipped, as SQL's SUM/AVG do; the mean of no values is null.
 * Register it with {@link Register#spark}.
 */
public final class SparkExactSum extends ExactSumAggregator<Double> {
    private static final long serialVersionUID = 1L;

    private final boolean mean;

    /** {@code mean=false}: the sum; {@code true}: the sum divided by the count. */
    public SparkExactSum(boolean mean) {
        this.mean = mean;
    }

    @Override
    public Double finish(ExactSum acc) {
        if (!mean) return acc.value();
        return acc.count() == 0 ? null : acc.mean();
    }

    @Override
    public Encoder<Double> outputEncoder() {
        return Encoders.DOUBLE();
    }
}
