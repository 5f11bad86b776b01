package dev.tandem.udf;

import java.io.DataInput;
import java.io.DataOutput;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * One entity's trailing windows: the state and the algorithm of Tandem's stream window operator
 * (engine-free; {@link FlinkWindowFeatures} keeps one per key in Flink state).
 *
 * <p>Why not Flink's {@code OVER ... RANGE} windows: that operator walks all of a key's window
 * state for every new timestamp, O(rows in window) per event, so a hot key in a long window makes
 * a stream quadratic (BENCHMARKS.md). Here every row enters and leaves each window once:
 *
 * <ul>
 *   <li>Rows wait in {@link #pending} until the watermark passes their event time ({@link #fire}),
 *       so they are processed in event-time order and all peers (equal times) together.
 *   <li>Processed rows go to a ring in window order: event time, then the spec's order column
 *       (the event id), the reference evaluator's order. Each window length keeps the sequence
 *       number of its first row; rows before {@code t - W} leave it when a row at {@code t} comes.
 *   <li>Aggregates are updated on entry and exit: counts from sequence numbers, integer sums
 *       exactly ({@link Math#addExact}: an overflow fails rather than wraps), float sums and means
 *       with {@link ExactSum} (exact removal), min/max with a monotonic deque that keeps the
 *       oldest of equal values (Python's {@code max} returns the first), distinct counts with a
 *       multiset, last from the sequence number of the newest row with a value.
 *   <li>Every aggregate of a column skips its nulls (a null enters and leaves nothing); count
 *       counts rows. A window without a value has a null sum, mean, min, max and last, and a
 *       distinct count of 0, so sums keep their number of values.
 * </ul>
 *
 * <p>Every peer of a timestamp gets the same aggregates: window {@code [t - W, t]} with peers.
 */
public final class KeyWindows {
    /** Rows waiting for the watermark: event time to the rows' values, in arrival order. */
    private final TreeMap<Long, List<Object[]>> pending = new TreeMap<>();

    // The ring of processed rows still inside the widest window: times[i] and kept[i] (the kept
    // columns' values) at index (head + seq - firstSeq) mod capacity.
    private long firstSeq;
    private int head;
    private int size;
    private long[] times = new long[4];
    private Object[][] kept = new Object[4][];

    /** Per window length: sequence number of its first row. */
    private long[] starts;
    /** Per feature: its running aggregate (LongSum, ExactSum, LongDeque, Multiset, Latest), or null for count. */
    private Object[] aggregates;

    private KeyWindows(long[] starts, Object[] aggregates) {
        this.starts = starts;
        this.aggregates = aggregates;
    }

    /** Empty windows for {@code spec}. */
    public static KeyWindows create(WindowSpec spec) {
        Object[] aggregates = new Object[spec.features.size()];
        for (int f = 0; f < aggregates.length; f++) {
            aggregates[f] = switch (spec.features.get(f).agg) {
                case SUM -> spec.features.get(f).result == WindowSpec.Kind.LONG ? new LongSum() : new ExactSum();
                case MEAN -> new ExactSum();
                case MIN, MAX -> new LongDeque();
                case DISTINCT_COUNT -> new Multiset();
                case LAST -> new Latest();
                case COUNT -> null;
            };
        }
        return new KeyWindows(new long[spec.windowsMs.length], aggregates);
    }

    /**
     * Whether every row has left every window at {@code time} and none waits: the key's state can
     * go (a later row would find all of these rows outside its windows anyway).
     */
    public boolean expired(WindowSpec spec, long time) {
        return pending.isEmpty() && (size == 0 || time >= expiresAt(spec));
    }

    /** The first time at which the newest processed row (there must be one) has left the widest window. */
    public long expiresAt(WindowSpec spec) {
        return newest() + spec.windowsMs[spec.windowsMs.length - 1] + 1;
    }

    /** Event time of the newest processed row (there must be one). */
    public long newest() {
        return times[index(firstSeq + size - 1)];
    }

    /** Holds {@code row} until {@link #fire} reaches {@code time}; true when it is the first row at that time. */
    public boolean buffer(long time, Object[] row) {
        List<Object[]> rows = pending.get(time);
        if (rows != null) {
            rows.add(row);
            return false;
        }
        rows = new ArrayList<>(1);
        rows.add(row);
        pending.put(time, rows);
        return true;
    }

    /**
     * Processes every waiting row with event time {@code <= time}, oldest first; returns one output
     * row per processed row: its values followed by the feature values, in {@code spec} order.
     */
    public List<Object[]> fire(WindowSpec spec, long time) {
        List<Object[]> out = new ArrayList<>();
        while (!pending.isEmpty() && pending.firstKey() <= time) {
            Map.Entry<Long, List<Object[]>> peers = pending.pollFirstEntry();
            advance(spec, peers.getKey(), peers.getValue(), out);
        }
        return out;
    }

    private void advance(WindowSpec spec, long t, List<Object[]> peers, List<Object[]> out) {
        if (peers.size() > 1) {
            Comparator<Object> order = WindowSpec.order(spec.orderKind);
            int at = spec.orderPosition;
            peers.sort((a, b) -> order.compare(a[at], b[at]));
        }
        for (Object[] row : peers) {
            Object[] values = new Object[spec.columnPositions.length];
            for (int c = 0; c < values.length; c++) values[c] = row[spec.columnPositions[c]];
            long seq = append(t, values);
            for (int f = 0; f < aggregates.length; f++) {
                if (aggregates[f] != null) enter(spec, f, seq, values);
            }
        }
        for (int w = 0; w < starts.length; w++) {
            long from = t - spec.windowsMs[w];  // [t - W, t]: rows before t - W leave (the rows at t stop the loop)
            while (times[index(starts[w])] < from) {
                for (int f = 0; f < aggregates.length; f++) {
                    if (aggregates[f] != null && spec.features.get(f).window == w) leave(spec, f, starts[w]);
                }
                starts[w]++;
            }
        }
        long keepFrom = starts[starts.length - 1];
        while (firstSeq < keepFrom) {
            kept[head] = null;
            head = (head + 1) & (times.length - 1);
            firstSeq++;
            size--;
        }
        Object[] features = values(spec);
        for (Object[] row : peers) {
            Object[] result = Arrays.copyOf(row, row.length + features.length);
            System.arraycopy(features, 0, result, row.length, features.length);
            out.add(result);
        }
    }

    private long append(long t, Object[] values) {
        if (size == times.length) {
            long[] newTimes = new long[times.length * 2];
            Object[][] newKept = new Object[times.length * 2][];
            for (int i = 0; i < size; i++) {
                newTimes[i] = times[(head + i) & (times.length - 1)];
                newKept[i] = kept[(head + i) & (times.length - 1)];
            }
            times = newTimes;
            kept = newKept;
            head = 0;
        }
        long seq = firstSeq + size;
        int i = index(seq);
        times[i] = t;
        kept[i] = values;
        size++;
        return seq;
    }

    private int index(long seq) {
        return (int) ((head + (seq - firstSeq)) & (times.length - 1));
    }

    private Object value(long seq, int column) {
        return kept[index(seq)][column];
    }

    private void enter(WindowSpec spec, int f, long seq, Object[] values) {
        WindowSpec.Feature feature = spec.features.get(f);
        Object v = values[feature.column];
        if (v == null) return;
        switch (feature.agg) {
            case SUM, MEAN -> {
                if (aggregates[f] instanceof LongSum sum) sum.add(feature, (Long) v);
                else ((ExactSum) aggregates[f]).add(((Number) v).doubleValue());
            }
            case MIN, MAX -> {
                LongDeque deque = (LongDeque) aggregates[f];
                WindowSpec.Kind kind = spec.columnKinds[feature.column];
                boolean max = feature.agg == WindowSpec.Agg.MAX;
                // Drop strictly worse values only: the deque's front stays the oldest extreme.
                while (!deque.isEmpty()) {
                    Object back = value(deque.back(), feature.column);
                    if (max ? less(kind, back, v) : less(kind, v, back)) deque.popBack();
                    else break;
                }
                deque.pushBack(seq);
            }
            case DISTINCT_COUNT -> ((Multiset) aggregates[f]).add(v);
            case LAST -> ((Latest) aggregates[f]).seq = seq;
            default -> throw new IllegalStateException(feature.agg.toString());
        }
    }

    private void leave(WindowSpec spec, int f, long seq) {
        WindowSpec.Feature feature = spec.features.get(f);
        Object v = value(seq, feature.column);
        if (v == null) return;
        switch (feature.agg) {
            case SUM, MEAN -> {
                if (aggregates[f] instanceof LongSum sum) sum.remove((Long) v);
                else ((ExactSum) aggregates[f]).remove(((Number) v).doubleValue());
            }
            case MIN, MAX -> {
                LongDeque deque = (LongDeque) aggregates[f];
                if (!deque.isEmpty() && deque.front() == seq) deque.popFront();
            }
            case DISTINCT_COUNT -> ((Multiset) aggregates[f]).remove(v);
            case LAST -> { }  // the newest row with a value leaves after every older one: values() checks it is inside
            default -> throw new IllegalStateException(feature.agg.toString());
        }
    }

    /** a < b; doubles compare as Java/Python {@code <} (so -0.0 equals 0.0). */
    private static boolean less(WindowSpec.Kind kind, Object a, Object b) {
        if (kind == WindowSpec.Kind.DOUBLE) return (Double) a < (Double) b;
        return WindowSpec.order(kind).compare(a, b) < 0;
    }

    private Object[] values(WindowSpec spec) {
        Object[] result = new Object[aggregates.length];
        long end = firstSeq + size;
        for (int f = 0; f < result.length; f++) {
            WindowSpec.Feature feature = spec.features.get(f);
            Object agg = aggregates[f];
            result[f] = switch (feature.agg) {
                case COUNT -> end - starts[feature.window];
                case SUM -> agg instanceof LongSum sum ? (Object) sum.value() : (Object) sum((ExactSum) agg);
                case MEAN -> ((ExactSum) agg).count() == 0 ? null : ((ExactSum) agg).mean();
                case MIN, MAX -> ((LongDeque) agg).isEmpty() ? null : value(((LongDeque) agg).front(), feature.column);
                case DISTINCT_COUNT -> (long) ((Multiset) agg).distinct();
                case LAST -> {
                    long seq = ((Latest) agg).seq;
                    yield seq >= starts[feature.window] ? value(seq, feature.column) : null;
                }
            };
        }
        return result;
    }

    /** The exact sum of the values held, null when there are none. */
    private static Double sum(ExactSum sum) {
        return sum.count() == 0 ? null : sum.value();
    }

    /** An integer sum kept exactly and its number of values (a window of nulls has no sum, not 0). */
    static final class LongSum {
        long sum;
        long count;

        void add(WindowSpec.Feature feature, long v) {
            try {
                sum = Math.addExact(sum, v);
            } catch (ArithmeticException e) {
                throw new ArithmeticException("feature " + feature.name + ": the integer sum leaves the int64 range");
            }
            count++;
        }

        void remove(long v) {
            sum = Math.subtractExact(sum, v);
            count--;
        }

        Long value() {
            return count == 0 ? null : sum;
        }
    }

    /**
     * Sequence number of the newest row with a value, -1 before any. Rows leave in sequence order,
     * so when that row has left a window no row with a value is left in it: O(1) per row, however
     * many nulls follow.
     */
    static final class Latest {
        long seq = -1;
    }

    /** A deque of sequence numbers (circular array). */
    static final class LongDeque {
        long[] items = new long[4];
        int head;
        int size;

        boolean isEmpty() { return size == 0; }
        long front() { return items[head]; }
        long back() { return items[(head + size - 1) & (items.length - 1)]; }
        void popFront() { head = (head + 1) & (items.length - 1); size--; }
        void popBack() { size--; }

        void pushBack(long seq) {
            if (size == items.length) {
                long[] grown = new long[items.length * 2];
                for (int i = 0; i < size; i++) grown[i] = items[(head + i) & (items.length - 1)];
                items = grown;
                head = 0;
            }
            items[(head + size) & (items.length - 1)] = seq;
            size++;
        }
    }

    /** Value counts; doubles are keyed so that -0.0 and 0.0 are one value, as in a Python set. */
    static final class Multiset {
        final HashMap<Object, long[]> counts = new HashMap<>();

        void add(Object v) { counts.computeIfAbsent(key(v), k -> new long[1])[0]++; }

        void remove(Object v) {
            Object k = key(v);
            long[] c = counts.get(k);
            if (--c[0] == 0) counts.remove(k);
        }

        int distinct() { return counts.size(); }

        private static Object key(Object v) {
            return v instanceof Double d && d == 0.0 ? (Object) 0.0 : v;
        }
    }

    // ---- serialization (Flink state and checkpoints; see KeyWindowsSerializer) ----

    /**
     * Leads the state so that state of another layout is refused, not misread: the layout before
     * nulls (no format number) began with the pending count, never negative.
     */
    private static final int FORMAT = -2;
    private static final byte NULL = 0, STRING = 1, LONG = 2, DOUBLE = 3, INT = 4, BOOLEAN = 5;
    private static final byte NO_AGG = 0, LONG_SUM = 1, EXACT = 2, DEQUE = 3, MULTISET = 4, LATEST = 5;

    public void write(DataOutput out) throws IOException {
        out.writeInt(FORMAT);
        out.writeInt(pending.size());
        for (Map.Entry<Long, List<Object[]>> e : pending.entrySet()) {
            out.writeLong(e.getKey());
            out.writeInt(e.getValue().size());
            for (Object[] row : e.getValue()) writeValues(out, row);
        }
        out.writeLong(firstSeq);
        out.writeInt(size);
        for (int i = 0; i < size; i++) {
            out.writeLong(times[(head + i) & (times.length - 1)]);
            writeValues(out, kept[(head + i) & (times.length - 1)]);
        }
        out.writeInt(starts.length);
        for (long s : starts) out.writeLong(s);
        out.writeInt(aggregates.length);
        for (Object agg : aggregates) {
            if (agg == null) {
                out.writeByte(NO_AGG);
            } else if (agg instanceof LongSum sum) {
                out.writeByte(LONG_SUM);
                out.writeLong(sum.sum);
                out.writeLong(sum.count);
            } else if (agg instanceof ExactSum sum) {
                out.writeByte(EXACT);
                byte[] bytes = sum.toBytes();
                out.writeInt(bytes.length);
                out.write(bytes);
            } else if (agg instanceof LongDeque deque) {
                out.writeByte(DEQUE);
                out.writeInt(deque.size);
                for (int i = 0; i < deque.size; i++) out.writeLong(deque.items[(deque.head + i) & (deque.items.length - 1)]);
            } else if (agg instanceof Multiset multiset) {
                out.writeByte(MULTISET);
                out.writeInt(multiset.counts.size());
                for (Map.Entry<Object, long[]> e : multiset.counts.entrySet()) {
                    writeValue(out, e.getKey());
                    out.writeLong(e.getValue()[0]);
                }
            } else {
                out.writeByte(LATEST);
                out.writeLong(((Latest) agg).seq);
            }
        }
    }

    public static KeyWindows read(DataInput in) throws IOException {
        int format = in.readInt();
        if (format != FORMAT) {
            throw new IOException("window state of another layout (" + (format >= 0 ? "before nulls" : "format " + format)
                    + "): start the job without this checkpoint");
        }
        int pendingTimes = in.readInt();
        TreeMap<Long, List<Object[]>> pending = new TreeMap<>();
        for (int p = 0; p < pendingTimes; p++) {
            long time = in.readLong();
            int rows = in.readInt();
            List<Object[]> list = new ArrayList<>(rows);
            for (int r = 0; r < rows; r++) list.add(readValues(in));
            pending.put(time, list);
        }
        long firstSeq = in.readLong();
        int size = in.readInt();
        int capacity = Math.max(4, Integer.highestOneBit(Math.max(1, size)) * 2);
        long[] times = new long[capacity];
        Object[][] kept = new Object[capacity][];
        for (int i = 0; i < size; i++) {
            times[i] = in.readLong();
            kept[i] = readValues(in);
        }
        long[] starts = new long[in.readInt()];
        for (int w = 0; w < starts.length; w++) starts[w] = in.readLong();
        Object[] aggregates = new Object[in.readInt()];
        for (int f = 0; f < aggregates.length; f++) {
            byte tag = in.readByte();
            aggregates[f] = switch (tag) {
                case NO_AGG -> null;
                case LONG_SUM -> {
                    LongSum sum = new LongSum();
                    sum.sum = in.readLong();
                    sum.count = in.readLong();
                    yield sum;
                }
                case EXACT -> {
                    byte[] bytes = new byte[in.readInt()];
                    in.readFully(bytes);
                    yield ExactSum.fromBytes(bytes);
                }
                case DEQUE -> {
                    LongDeque deque = new LongDeque();
                    int n = in.readInt();
                    for (int i = 0; i < n; i++) deque.pushBack(in.readLong());
                    yield deque;
                }
                case MULTISET -> {
                    Multiset multiset = new Multiset();
                    int n = in.readInt();
                    for (int i = 0; i < n; i++) multiset.counts.put(readValue(in), new long[] {in.readLong()});
                    yield multiset;
                }
                case LATEST -> {
                    Latest latest = new Latest();
                    latest.seq = in.readLong();
                    yield latest;
                }
                default -> throw new IOException("window state: unknown aggregate tag " + tag);
            };
        }
        KeyWindows windows = new KeyWindows(starts, aggregates);
        windows.pending.putAll(pending);
        windows.firstSeq = firstSeq;
        windows.size = size;
        windows.times = times;
        windows.kept = kept;
        return windows;
    }

    /**
     * A deep copy: the heap state backend copies an entry that a running snapshot still holds
     * before the function may change it. Row arrays are shared: they are never changed after
     * {@link #buffer}, and their values are immutable.
     */
    public KeyWindows copy() {
        Object[] aggregatesCopy = new Object[aggregates.length];
        for (int f = 0; f < aggregates.length; f++) {
            Object agg = aggregates[f];
            if (agg instanceof LongSum sum) {
                LongSum c = new LongSum();
                c.sum = sum.sum;
                c.count = sum.count;
                aggregatesCopy[f] = c;
            } else if (agg instanceof ExactSum sum) {
                aggregatesCopy[f] = ExactSum.fromBytes(sum.toBytes());
            } else if (agg instanceof LongDeque deque) {
                LongDeque c = new LongDeque();
                c.items = deque.items.clone();
                c.head = deque.head;
                c.size = deque.size;
                aggregatesCopy[f] = c;
            } else if (agg instanceof Multiset multiset) {
                Multiset c = new Multiset();
                for (Map.Entry<Object, long[]> e : multiset.counts.entrySet()) c.counts.put(e.getKey(), e.getValue().clone());
                aggregatesCopy[f] = c;
            } else if (agg instanceof Latest latest) {
                Latest c = new Latest();
                c.seq = latest.seq;
                aggregatesCopy[f] = c;
            }
        }
        KeyWindows c = new KeyWindows(starts.clone(), aggregatesCopy);
        for (Map.Entry<Long, List<Object[]>> e : pending.entrySet()) c.pending.put(e.getKey(), new ArrayList<>(e.getValue()));
        c.firstSeq = firstSeq;
        c.head = head;
        c.size = size;
        c.times = times.clone();
        c.kept = kept.clone();
        return c;
    }

    private static void writeValues(DataOutput out, Object[] values) throws IOException {
        out.writeInt(values.length);
        for (Object v : values) writeValue(out, v);
    }

    private static Object[] readValues(DataInput in) throws IOException {
        Object[] values = new Object[in.readInt()];
        for (int i = 0; i < values.length; i++) values[i] = readValue(in);
        return values;
    }

    private static void writeValue(DataOutput out, Object v) throws IOException {
        if (v == null) {
            out.writeByte(NULL);
        } else if (v instanceof String s) {
            byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
            out.writeByte(STRING);
            out.writeInt(bytes.length);
            out.write(bytes);
        } else if (v instanceof Long l) {
            out.writeByte(LONG);
            out.writeLong(l);
        } else if (v instanceof Double d) {
            out.writeByte(DOUBLE);
            out.writeLong(Double.doubleToRawLongBits(d));
        } else if (v instanceof Integer i) {
            out.writeByte(INT);
            out.writeInt(i);
        } else if (v instanceof Boolean b) {
            out.writeByte(BOOLEAN);
            out.writeBoolean(b);
        } else {
            throw new IOException("window state cannot keep a " + v.getClass().getName()
                    + " (columns passed through the window operator must be STRING, BIGINT, INT, DOUBLE or BOOLEAN)");
        }
    }

    private static Object readValue(DataInput in) throws IOException {
        byte tag = in.readByte();
        return switch (tag) {
            case NULL -> null;
            case STRING -> {
                byte[] bytes = new byte[in.readInt()];
                in.readFully(bytes);
                yield new String(bytes, StandardCharsets.UTF_8);
            }
            case LONG -> in.readLong();
            case DOUBLE -> Double.longBitsToDouble(in.readLong());
            case INT -> in.readInt();
            case BOOLEAN -> in.readBoolean();
            default -> throw new IOException("window state: unknown value tag " + tag);
        };
    }
}
