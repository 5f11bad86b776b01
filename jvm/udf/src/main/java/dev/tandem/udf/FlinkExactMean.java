package dev.tandem.udf;

/** Flink's {@code exact_mean(double)}: {@link FlinkExactSum}'s sum divided by the count; null when empty. */
public class FlinkExactMean extends FlinkExactSum {
    private static final long serialVersionUID = 1L;

    @Override
    public Double getValue(ExactSum acc) {
        return acc.count() == 0 ? null : acc.mean();
    }
}
