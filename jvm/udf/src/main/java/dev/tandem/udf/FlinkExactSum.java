package dev.tandem.udf;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;

/**
 * Flink's {@code exact_sum(double)}: the correctly rounded exact sum, also in
 * bounded OVER windows, whose rows leaving the window are {@link #retract}ed
 * exactly (Flink's native SUM subtracts in doubles and drifts, STACK_NOTES.md).
 * Nulls are skipped. The accumulator is a RAW type (Flink serializes it with
 * Kryo into state and checkpoints), which keeps {@link ExactSum} engine-free.
 */
@FunctionHint(accumulator = @DataTypeHint(value = "RAW", bridgedTo = ExactSum.class))
public class FlinkExactSum extends AggregateFunction<Double, ExactSum> {
    private static final long serialVersionUID = 1L;

    @Override
    public ExactSum createAccumulator() {
        return new ExactSum();
    }

    @Override
    public Double getValue(ExactSum acc) {
        return acc.value();
    }

    public void accumulate(ExactSum acc, Double x) {
        if (x != null) acc.add(x);
    }

    public void retract(ExactSum acc, Double x) {
        if (x != null) acc.remove(x);
    }

    public void merge(ExactSum acc, Iterable<ExactSum> others) {
        for (ExactSum other : others) acc.merge(other);
    }

    public void resetAccumulator(ExactSum acc) {
        acc.clear();
    }
}
