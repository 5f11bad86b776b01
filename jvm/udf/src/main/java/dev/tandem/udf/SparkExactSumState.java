package dev.tandem.udf;

import org.apache.spark.sql.Encoder;
import org.apache.spark.sql.Encoders;

/**
 * Spark's {@code exact_sum_state(double)}: the exact sum's whole state as
 * bytes ({@link ExactSum#toBytes}) instead of its rounded value.
 *
 * <p>Why: Spark re-aggregates a sliding {@code RANGE} frame from scratch for
 * every row (the work is the sum of all frame sizes: 680 M rows for a 7-day
 * window over 2 M events), but evaluates a frame that starts at {@code
 * UNBOUNDED PRECEDING} incrementally. Over such frames this aggregate yields
 * exact prefix states, and {@code exact_window_sum(upto_t, before_t_minus_w)}
 * ({@link Register}) subtracts two of them exactly and rounds once: the same
 * correctly rounded window sum as {@code exact_sum} over the sliding frame,
 * in O(1) per row.
 */
public final class SparkExactSumState extends ExactSumAggregator<byte[]> {
    private static final long serialVersionUID = 1L;

    @Override
    public byte[] finish(ExactSum acc) {
        return acc.toBytes();
    }

    @Override
    public Encoder<byte[]> outputEncoder() {
        return Encoders.BINARY();
    }

    /** The correctly rounded exact sum of the values in {@code upto} and not in {@code before}; null when there
     *  are none (a window whose values are all null). */
    public static Double windowSum(byte[] upto, byte[] before) {
        ExactSum s = difference(upto, before);
        return s.count() == 0 ? null : s.value();
    }

    /** That sum divided by the number of those values; null when there are none. */
    public static Double windowMean(byte[] upto, byte[] before) {
        ExactSum s = difference(upto, before);
        return s.count() == 0 ? null : s.mean();
    }

    private static ExactSum difference(byte[] upto, byte[] before) {
        ExactSum s = ExactSum.fromBytes(upto);
        if (before != null) s.subtract(ExactSum.fromBytes(before));
        return s;
    }
}
