package dev.tandem.udf;

import java.time.Duration;
import java.util.List;
import org.apache.flink.api.common.functions.FilterFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Stages 2 and 3 of the stream job (stream_jobs/pipeline.py) in one keyed operator: deduplicate by
 * event id, then the per-record lateness check, each the twin of its rule in tandem/reference.py.
 *
 * <p>The first record of an id in arrival order is the event; later ones are {@code duplicate}. A
 * first record whose event time is more than the allowed lateness behind the latest first record
 * before it (or itself) is {@code late}; every other first record is {@code accepted}. The latest
 * event time is one number for the whole stream, kept in operator state, so this operator must run
 * at parallelism 1 (as the source and validation do: arrival order must be well defined). The ids
 * are keyed state that expires {@code ttlMs} after an id was first seen (processing time; 0 keeps them
 * forever).
 *
 * <p>One operator instead of two SQL OVER aggregates: each needed its own time attribute, so its own
 * pass through a DataStream, and the dedup state was the OVER's accumulator row per id.
 *
 * <p>It fills two columns of the row it is given (so the output type is the input type): the
 * verdict and the latest event time that decided it.
 */
public final class Admit extends KeyedProcessFunction<String, Row, Row> implements CheckpointedFunction {
    public static final String ACCEPTED = "accepted", DUPLICATE = "duplicate", LATE = "late";

    private final int timeField, verdictField, latestField;
    private final long allowedLatenessMs, ttlMs;
    private transient ValueState<Boolean> seen;
    private transient ListState<Long> latestState;
    private long latestMs = Long.MIN_VALUE;

    public Admit(int timeField, int verdictField, int latestField, long allowedLatenessMs, long ttlMs) {
        this.timeField = timeField;
        this.verdictField = verdictField;
        this.latestField = latestField;
        this.allowedLatenessMs = allowedLatenessMs;
        this.ttlMs = ttlMs;
    }

    /**
     * The rows of {@code in} whose {@code statusField} is {@code valid}, keyed by their event id column, through
     * this operator (parallelism 1, uid {@code uid}).
     */
    public static SingleOutputStreamOperator<Row> apply(
            DataStream<Row> in, int statusField, String valid, int idField, Admit admit, String uid) {
        return in.filter(new StatusIs(statusField, valid)).setParallelism(1).name(uid + "-valid")
                .keyBy(new IdKey(idField))
                .process(admit).returns(in.getType()).setParallelism(1).uid(uid).name(uid);
    }

    @Override
    public void open(OpenContext context) {
        ValueStateDescriptor<Boolean> descriptor = new ValueStateDescriptor<>("seen", Types.BOOLEAN);
        if (ttlMs > 0) {
            descriptor.enableTimeToLive(StateTtlConfig.newBuilder(Duration.ofMillis(ttlMs))
                    .setUpdateType(StateTtlConfig.UpdateType.OnCreateAndWrite)
                    .setStateVisibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                    .build());
        }
        seen = getRuntimeContext().getState(descriptor);
    }

    @Override
    public void processElement(Row row, Context context, Collector<Row> out) throws Exception {
        String verdict;
        if (seen.value() != null) {
            verdict = DUPLICATE;
        } else {
            seen.update(Boolean.TRUE);
            long time = (Long) row.getField(timeField);
            if (time > latestMs) latestMs = time;
            verdict = time >= latestMs - allowedLatenessMs ? ACCEPTED : LATE;
        }
        row.setField(verdictField, verdict);
        row.setField(latestField, latestMs);
        out.collect(row);
    }

    @Override
    public void snapshotState(FunctionSnapshotContext context) throws Exception {
        latestState.update(List.of(latestMs));
    }

    @Override
    public void initializeState(FunctionInitializationContext context) throws Exception {
        latestState = context.getOperatorStateStore().getListState(new ListStateDescriptor<>("latest", Types.LONG));
        for (Long restored : latestState.get()) latestMs = Math.max(latestMs, restored);
    }

    /** Rows whose status column holds one word. */
    public static final class StatusIs implements FilterFunction<Row> {
        private final int field;
        private final String status;

        public StatusIs(int field, String status) {
            this.field = field;
            this.status = status;
        }

        @Override
        public boolean filter(Row row) {
            return status.equals(row.getField(field));
        }
    }

    /** The event id column of a row. */
    public static final class IdKey implements KeySelector<Row, String> {
        private final int field;

        public IdKey(int field) {
            this.field = field;
        }

        @Override
        public String getKey(Row row) {
            return (String) row.getField(field);
        }
    }
}
