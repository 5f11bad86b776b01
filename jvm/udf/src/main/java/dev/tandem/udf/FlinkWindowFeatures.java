package dev.tandem.udf;

import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Optional;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.api.dataview.MapView;
import org.apache.flink.table.catalog.DataTypeFactory;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.table.functions.TableSemantics;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.inference.CallContext;
import org.apache.flink.table.types.inference.StateTypeStrategy;
import org.apache.flink.table.types.inference.StaticArgument;
import org.apache.flink.table.types.inference.StaticArgumentTrait;
import org.apache.flink.table.types.inference.TypeInference;
import org.apache.flink.table.types.inference.TypeStrategies;
import org.apache.flink.table.types.logical.LogicalTypeRoot;
import org.apache.flink.types.Row;

/**
 * One feature group's trailing windows as a Flink process table function, called as
 * {@code f(input => TABLE t PARTITION BY key, on_time => DESCRIPTOR(rt), uid => '...')}.
 *
 * <p>A row is buffered until the watermark passes its event time (an event-time timer per
 * distinct time), then processed with its peers. Output, per input row: the partition key, the
 * row's other columns except timestamps, the features in spec order, and Flink's {@code rowtime}
 * (the row's event time). Every feature is nullable: a window whose column holds only nulls has a
 * null sum, mean, min, max and last (count and distinct_count are never null). The stream job drops rows the watermark would make late before they
 * reach this operator ({@code stream_jobs/pipeline.py}), so Flink's PTF runner never discards one.
 *
 * <p>Each key's {@link KeyWindows} (its small, fixed-size part) lives in one keyed map-state entry,
 * so the heap state backend hands the object over without serializing it per row; what grows with
 * events lives in four more map states ({@link WindowTables}), entry by entry, so RocksDB reads and
 * writes a few small entries per event, never a key's whole window. The state has no processing-time TTL
 * (Flink's heap TTL cleanup deep-copies the values it visits); it is dropped in event time, by a
 * named timer, once the key's newest row has left its widest window.
 *
 * <p>The spec (see {@link WindowSpec}) is a constructor argument: the function is registered as
 * an instance, one per group, by {@code stream_jobs/compile_catalog.py}.
 */
public class FlinkWindowFeatures extends ProcessTableFunction<Row> {
    private static final long serialVersionUID = 1L;
    private static final String INPUT = "input";
    private static final Integer ONLY = 0;
    private static final String EXPIRE = "expire";

    private final String spec;
    private transient WindowSpec parsed;
    private transient int[] passed;

    public FlinkWindowFeatures(String spec) {
        this.spec = spec;
    }

    public void eval(Context ctx, MapView<Integer, KeyWindows> state, MapView<Long, byte[]> rows,
                     MapView<Long, byte[]> pending, MapView<Long, byte[]> extremes, MapView<String, Long> counts,
                     Row input) throws Exception {
        prepare(ctx);
        Object[] row = new Object[passed.length];
        for (int i = 0; i < passed.length; i++) row[i] = input.getField(passed[i]);
        TimeContext<Long> time = ctx.timeContext(Long.class);
        KeyWindows windows = state.get(ONLY);
        if (windows == null) windows = KeyWindows.create(parsed);
        if (windows.buffer(tables(rows, pending, extremes, counts), time.time(), row)) time.registerOnTime(time.time());
        state.put(ONLY, windows);
    }

    public void onTimer(OnTimerContext ctx, MapView<Integer, KeyWindows> state, MapView<Long, byte[]> rows,
                        MapView<Long, byte[]> pending, MapView<Long, byte[]> extremes, MapView<String, Long> counts)
            throws Exception {
        prepare(ctx);
        KeyWindows windows = state.get(ONLY);
        if (windows == null) return;
        TimeContext<Long> time = ctx.timeContext(Long.class);
        if (EXPIRE.equals(ctx.currentTimer())) {
            if (windows.expired(parsed, time.time())) drop(state, rows, extremes, counts, time);
            return;
        }
        List<Object[]> out = windows.fire(parsed, tables(rows, pending, extremes, counts), time.time());
        for (Object[] values : out) collect(Row.of(values));
        state.put(ONLY, windows);
        if (out.isEmpty()) return;
        // Drop the key's state once its newest row has left the widest window: a named timer (one
        // per key, replaced each time), or now if the watermark is already past that time (Flink
        // does not register timers behind the watermark).
        long expireAt = windows.expiresAt(parsed);
        Long watermark = time.currentWatermark();
        if (watermark != null && expireAt <= watermark) {
            if (windows.expired(parsed, watermark)) drop(state, rows, extremes, counts, time);
        } else {
            time.registerOnTime(EXPIRE, expireAt);
        }
    }

    /**
     * Removes the key's windows, its tables (no row waits: an expired key has none pending) and its
     * expiry timer entry. Not {@code Context.clearAll()}: in Flink 2.2 it walks every key's timers
     * and deletes timers of other keys.
     */
    private static void drop(MapView<Integer, KeyWindows> state, MapView<Long, byte[]> rows,
                             MapView<Long, byte[]> extremes, MapView<String, Long> counts, TimeContext<Long> time)
            throws Exception {
        state.remove(ONLY);
        rows.clear();
        extremes.clear();
        counts.clear();
        time.clearTimer(EXPIRE);
    }

    /** The key's tables over its map state. */
    private static WindowTables tables(MapView<Long, byte[]> rows, MapView<Long, byte[]> pending,
                                       MapView<Long, byte[]> extremes, MapView<String, Long> counts) {
        return new WindowTables(table(rows), table(pending), table(extremes), table(counts));
    }

    private static <K, V> WindowTables.Table<K, V> table(MapView<K, V> view) {
        return new WindowTables.Table<>() {
            @Override
            public V get(K key) {
                try {
                    return view.get(key);
                } catch (Exception e) {
                    throw new IllegalStateException("window state: " + e, e);
                }
            }

            @Override
            public void put(K key, V value) {
                try {
                    view.put(key, value);
                } catch (Exception e) {
                    throw new IllegalStateException("window state: " + e, e);
                }
            }

            @Override
            public void remove(K key) {
                try {
                    view.remove(key);
                } catch (Exception e) {
                    throw new IllegalStateException("window state: " + e, e);
                }
            }
        };
    }

    /** Resolves the spec against the input's columns once per function instance. */
    private void prepare(Context ctx) {
        if (parsed != null) return;
        TableSemantics semantics = ctx.tableSemanticsFor(INPUT);
        List<Integer> positions = passedPositions(semantics);
        passed = positions.stream().mapToInt(Integer::intValue).toArray();
        parsed = parse(semantics, positions);
    }

    /** The spec resolved against the passed-through columns (their names and kinds). */
    private WindowSpec parse(TableSemantics semantics, List<Integer> positions) {
        List<String> names = DataType.getFieldNames(semantics.dataType());
        List<DataType> types = DataType.getFieldDataTypes(semantics.dataType());
        List<String> passedNames = new ArrayList<>();
        List<WindowSpec.Kind> kinds = new ArrayList<>();
        for (int p : positions) {
            passedNames.add(names.get(p));
            kinds.add(kind(types.get(p)));
        }
        return WindowSpec.parse(spec, passedNames, kinds);
    }

    /**
     * Input columns other than the partition keys and timestamps, in input order. Timestamps are
     * left out by type because the time column is not known yet when the planner asks for the
     * output type; the output's {@code rowtime} carries the event time.
     */
    private static List<Integer> passedPositions(TableSemantics semantics) {
        List<Integer> keys = new ArrayList<>();
        for (int k : semantics.partitionByColumns()) keys.add(k);
        List<Integer> positions = new ArrayList<>();
        List<DataType> types = DataType.getFieldDataTypes(semantics.dataType());
        for (int i = 0; i < types.size(); i++) {
            LogicalTypeRoot root = types.get(i).getLogicalType().getTypeRoot();
            boolean timestamp = root == LogicalTypeRoot.TIMESTAMP_WITH_LOCAL_TIME_ZONE
                    || root == LogicalTypeRoot.TIMESTAMP_WITHOUT_TIME_ZONE;
            if (!keys.contains(i) && !timestamp) positions.add(i);
        }
        return positions;
    }

    private static WindowSpec.Kind kind(DataType type) {
        LogicalTypeRoot root = type.getLogicalType().getTypeRoot();
        return switch (root) {
            case BIGINT -> WindowSpec.Kind.LONG;
            case DOUBLE -> WindowSpec.Kind.DOUBLE;
            case VARCHAR, CHAR -> WindowSpec.Kind.STRING;
            case BOOLEAN -> WindowSpec.Kind.BOOLEAN;
            default -> null;
        };
    }

    private static DataType featureType(WindowSpec.Kind kind) {
        return switch (kind) {
            case LONG -> DataTypes.BIGINT();
            case DOUBLE -> DataTypes.DOUBLE();
            case STRING -> DataTypes.STRING();
            case BOOLEAN -> DataTypes.BOOLEAN();
        };
    }

    @Override
    public TypeInference getTypeInference(DataTypeFactory typeFactory) {
        LinkedHashMap<String, StateTypeStrategy> state = new LinkedHashMap<>();
        DataType windows = DataTypes.RAW(KeyWindows.class, new KeyWindowsSerializer());
        // No processing-time TTL (table.exec.state.ttl): it would copy entries on access to check
        // them, and window state expires in event time instead (the "expire" timer).
        state.put("windows", map(DataTypes.INT().notNull(), windows));
        state.put("rows", map(DataTypes.BIGINT().notNull(), DataTypes.BYTES().notNull()));
        state.put("pending", map(DataTypes.BIGINT().notNull(), DataTypes.BYTES().notNull()));
        state.put("extremes", map(DataTypes.BIGINT().notNull(), DataTypes.BYTES().notNull()));
        state.put("counts", map(DataTypes.STRING().notNull(), DataTypes.BIGINT().notNull()));
        return TypeInference.newBuilder()
                .staticArguments(StaticArgument.table(INPUT, Row.class, false,
                        EnumSet.of(StaticArgumentTrait.SET_SEMANTIC_TABLE, StaticArgumentTrait.REQUIRE_ON_TIME)))
                .stateTypeStrategies(state)
                .outputTypeStrategy(this::outputType)
                .build();
    }

    private static StateTypeStrategy map(DataType key, DataType value) {
        return StateTypeStrategy.of(TypeStrategies.explicit(MapView.newMapViewDataType(key, value)), Duration.ZERO);
    }

    /** The passed-through input columns, then the features. */
    private Optional<DataType> outputType(CallContext call) {
        Optional<TableSemantics> semantics = call.getTableSemantics(0);
        if (semantics.isEmpty()) return Optional.empty();
        List<String> names = DataType.getFieldNames(semantics.get().dataType());
        List<DataType> types = DataType.getFieldDataTypes(semantics.get().dataType());
        List<Integer> positions = passedPositions(semantics.get());
        List<DataTypes.Field> fields = new ArrayList<>();
        for (int p : positions) fields.add(DataTypes.FIELD(names.get(p), types.get(p)));
        WindowSpec parsedSpec;
        try {
            parsedSpec = parse(semantics.get(), positions);
        } catch (IllegalArgumentException e) {
            return call.fail(true, e.getMessage());
        }
        for (WindowSpec.Feature f : parsedSpec.features) fields.add(DataTypes.FIELD(f.name, featureType(f.result)));
        return Optional.of(DataTypes.ROW(fields));
    }
}
