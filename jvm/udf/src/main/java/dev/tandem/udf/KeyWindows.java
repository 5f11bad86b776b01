package dev.tandem.udf;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInput;
import java.io.DataInputStream;
import java.io.DataOutput;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * One entity's trailing windows: the state and the algorithm of Tandem's stream window operator
 * (engine-free; {@link FlinkWindowFeatures} keeps one per key in Flink state).
 *
 * <p>Why not Flink's {@code OVER ... RANGE} windows: that operator walks all of a key's window
 * state for every new timestamp, O(rows in window) per event, so a hot key in a long window makes
 * a stream quadratic (BENCHMARKS.md). Here every row enters and leaves each window once:
 *
 * <ul>
 *   <li>Rows wait in {@link WindowTables#pending} until the watermark passes their event time
 *       ({@link #fire}, called once per distinct time, in time order, by an event-time timer), so
 *       they are processed in event-time order and all peers (equal times) together.
 *   <li>Processed rows go to {@link WindowTables#rows} under consecutive sequence numbers, in window
 *       order: event time, then the spec's order column (the event id), the reference evaluator's
 *       order. Each window length keeps the sequence number and time of its first row; rows before
 *       {@code t - W} leave it when a row at {@code t} comes.
 *   <li>Aggregates are updated on entry and exit: counts from sequence numbers, integer sums
 *       exactly ({@link Math#addExact}: an overflow fails rather than wraps), float sums and means
 *       with {@link ExactSum} (exact removal), min/max with a monotonic deque that keeps the
 *       oldest of equal values (Python's {@code max} returns the first), distinct counts with a
 *       multiset, last from the newest row with a value.
 *   <li>Every aggregate of a column skips its nulls (a null enters and leaves nothing); count
 *       counts rows. A window without a value has a null sum, mean, min, max and last, and a
 *       distinct count of 0, so sums keep their number of values.
 * </ul>
 *
 * <p>This object is the key's small, fixed-size part (positions and running aggregates); what
 * grows with events (rows, pending rows, deques, multisets) lives in {@link WindowTables}, entry
 * by entry, so that a state backend off the heap reads and writes O(1) entries per event.
 *
 * <p>Every peer of a timestamp gets the same aggregates: window {@code [t - W, t]} with peers.
 */
public final class KeyWindows {
    /** Distinct event times waiting in {@link WindowTables#pending}. */
    private int pendingTimes;

    // Processed rows [firstSeq, firstSeq + size) are in the rows table; newest is the last one's time.
    private long firstSeq;
    private int size;
    private long newest;

    /** Per window length: sequence number and event time of its first row (the time once a row exists). */
    private long[] starts;
    private long[] startTimes;
    /** Per feature: its running aggregate (LongSum, ExactSum, Extremes, Distinct, Latest), or null for count. */
    private Object[] aggregates;

    private KeyWindows(long[] starts, long[] startTimes, Object[] aggregates) {
        this.starts = starts;
        this.startTimes = startTimes;
        this.aggregates = aggregates;
    }

    /** Empty windows for {@code spec}. */
    public static KeyWindows create(WindowSpec spec) {
        Object[] aggregates = new Object[spec.features.size()];
        for (int f = 0; f < aggregates.length; f++) {
            aggregates[f] = switch (spec.features.get(f).agg) {
                case SUM -> spec.features.get(f).result == WindowSpec.Kind.LONG ? new LongSum() : new ExactSum();
                case MEAN -> new ExactSum();
                case MIN, MAX -> new Extremes();
                case DISTINCT_COUNT -> new Distinct();
                case LAST -> new Latest();
                case COUNT -> null;
            };
        }
        return new KeyWindows(new long[spec.windowsMs.length], new long[spec.windowsMs.length], aggregates);
    }

    /**
     * Whether every row has left every window at {@code time} and none waits: the key's state can
     * go (a later row would find all of these rows outside its windows anyway).
     */
    public boolean expired(WindowSpec spec, long time) {
        return pendingTimes == 0 && (size == 0 || time >= expiresAt(spec));
    }

    /** The first time at which the newest processed row (there must be one) has left the widest window. */
    public long expiresAt(WindowSpec spec) {
        return newest + spec.windowsMs[spec.windowsMs.length - 1] + 1;
    }

    /** Holds {@code row} until {@link #fire} reaches {@code time}; true when it is the first row at that time. */
    public boolean buffer(WindowTables tables, long time, Object[] row) {
        byte[] held = tables.pending.get(time);
        byte[] encoded = encode(out -> writeValues(out, row));
        if (held == null) {
            tables.pending.put(time, encoded);
            pendingTimes++;
            return true;
        }
        byte[] joined = Arrays.copyOf(held, held.length + encoded.length);
        System.arraycopy(encoded, 0, joined, held.length, encoded.length);
        tables.pending.put(time, joined);
        return false;
    }

    /**
     * Processes the rows waiting at event time {@code time} (the caller fires every distinct time
     * it buffered, in time order: an event-time timer per time); returns one output row per
     * processed row: its values followed by the feature values, in {@code spec} order.
     */
    public List<Object[]> fire(WindowSpec spec, WindowTables tables, long time) {
        byte[] held = tables.pending.get(time);
        if (held == null) return List.of();
        tables.pending.remove(time);
        pendingTimes--;
        List<Object[]> peers = new ArrayList<>();
        try {
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(held));
            while (in.available() > 0) peers.add(readValues(in));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        List<Object[]> out = new ArrayList<>(peers.size());
        advance(spec, tables, time, peers, out);
        return out;
    }

    private void advance(WindowSpec spec, WindowTables tables, long t, List<Object[]> peers, List<Object[]> out) {
        if (peers.size() > 1) {
            Comparator<Object> order = WindowSpec.order(spec.orderKind);
            int at = spec.orderPosition;
            peers.sort((a, b) -> order.compare(a[at], b[at]));
        }
        for (Object[] row : peers) {
            Object[] values = new Object[spec.columnPositions.length];
            for (int c = 0; c < values.length; c++) values[c] = row[spec.columnPositions[c]];
            long seq = append(tables, t, values);
            for (int f = 0; f < aggregates.length; f++) {
                if (aggregates[f] != null) enter(spec, tables, f, seq, values);
            }
        }
        for (int w = 0; w < starts.length; w++) {
            long from = t - spec.windowsMs[w];  // [t - W, t]: rows before t - W leave (the rows at t stop the loop)
            if (startTimes[w] >= from) continue;
            boolean needsValues = leavesWithValues(spec, w);
            long seq = starts[w];
            byte[] row = tables.rows.get(seq);
            do {
                Object[] values = needsValues ? rowValues(row) : null;
                for (int f = 0; f < aggregates.length; f++) {
                    if (aggregates[f] != null && spec.features.get(f).window == w) leave(spec, tables, f, seq, values);
                }
                row = tables.rows.get(++seq);
            } while (rowTime(row) < from);
            starts[w] = seq;
            startTimes[w] = rowTime(row);
        }
        long keepFrom = starts[starts.length - 1];
        for (; firstSeq < keepFrom; firstSeq++, size--) tables.rows.remove(firstSeq);
        Object[] features = values(spec);
        for (Object[] row : peers) {
            Object[] result = Arrays.copyOf(row, row.length + features.length);
            System.arraycopy(features, 0, result, row.length, features.length);
            out.add(result);
        }
    }

    /** Whether a row leaving window {@code w} changes an aggregate by its values (counts, min/max, last go by sequence). */
    private boolean leavesWithValues(WindowSpec spec, int w) {
        for (WindowSpec.Feature feature : spec.features) {
            if (feature.window == w && (feature.agg == WindowSpec.Agg.SUM || feature.agg == WindowSpec.Agg.MEAN
                    || feature.agg == WindowSpec.Agg.DISTINCT_COUNT)) {
                return true;
            }
        }
        return false;
    }

    private long append(WindowTables tables, long t, Object[] values) {
        long seq = firstSeq + size;
        tables.rows.put(seq, encode(out -> {
            out.writeLong(t);
            writeValues(out, values);
        }));
        if (size == 0) Arrays.fill(startTimes, t);  // every window starts at this row (starts[w] == seq)
        size++;
        newest = t;
        return seq;
    }

    private static long rowTime(byte[] row) {
        long t = 0;
        for (int i = 0; i < Long.BYTES; i++) t = (t << 8) | (row[i] & 0xFF);
        return t;
    }

    private static Object[] rowValues(byte[] row) {
        return decode(row, in -> {
            in.readLong();
            return readValues(in);
        });
    }

    /** The key of deque position {@code position} of feature {@code f} in {@link WindowTables#extremes}. */
    static long slot(int f, long position) {
        return ((long) f << 48) | (position & 0xFFFF_FFFF_FFFFL);
    }

    /** The key of {@code v} in feature {@code f}'s multiset; doubles so that -0.0 and 0.0 are one value, as in a Python set. */
    static String valueKey(int f, Object v) {
        String value;
        if (v instanceof Double d) value = "d" + Double.doubleToLongBits(d == 0.0 ? 0.0 : d);
        else if (v instanceof String s) value = "s" + s;
        else value = (v instanceof Boolean ? "b" : "l") + v;
        return f + ":" + value;
    }

    private void enter(WindowSpec spec, WindowTables tables, int f, long seq, Object[] values) {
        WindowSpec.Feature feature = spec.features.get(f);
        Object v = values[feature.column];
        if (v == null) return;
        switch (feature.agg) {
            case SUM, MEAN -> {
                if (aggregates[f] instanceof LongSum sum) sum.add(feature, (Long) v);
                else ((ExactSum) aggregates[f]).add(((Number) v).doubleValue());
            }
            case MIN, MAX -> {
                Extremes deque = (Extremes) aggregates[f];
                WindowSpec.Kind kind = spec.columnKinds[feature.column];
                boolean max = feature.agg == WindowSpec.Agg.MAX;
                // Drop strictly worse values only: the deque's front stays the oldest extreme.
                while (deque.size > 0 && (max ? less(kind, deque.backValue, v) : less(kind, v, deque.backValue))) {
                    tables.extremes.remove(slot(f, deque.front + deque.size - 1));
                    deque.size--;
                    if (deque.size > 0) deque.backValue = entryValue(tables.extremes.get(slot(f, deque.front + deque.size - 1)));
                }
                tables.extremes.put(slot(f, deque.front + deque.size), encode(out -> {
                    out.writeLong(seq);
                    writeValue(out, v);
                }));
                if (deque.size == 0) {
                    deque.frontSeq = seq;
                    deque.frontValue = v;
                }
                deque.size++;
                deque.backValue = v;
            }
            case DISTINCT_COUNT -> {
                String key = valueKey(f, v);
                Long count = tables.counts.get(key);
                tables.counts.put(key, count == null ? 1L : count + 1);
                if (count == null) ((Distinct) aggregates[f]).values++;
            }
            case LAST -> {
                Latest latest = (Latest) aggregates[f];
                latest.seq = seq;
                latest.value = v;
            }
            default -> throw new IllegalStateException(feature.agg.toString());
        }
    }

    /** Row {@code seq} leaves feature {@code f}'s window; {@code values} are its kept values, when {@link #leavesWithValues}. */
    private void leave(WindowSpec spec, WindowTables tables, int f, long seq, Object[] values) {
        WindowSpec.Feature feature = spec.features.get(f);
        switch (feature.agg) {
            case SUM, MEAN -> {
                Object v = values[feature.column];
                if (v == null) return;
                if (aggregates[f] instanceof LongSum sum) sum.remove((Long) v);
                else ((ExactSum) aggregates[f]).remove(((Number) v).doubleValue());
            }
            case MIN, MAX -> {
                Extremes deque = (Extremes) aggregates[f];
                if (deque.size == 0 || deque.frontSeq != seq) return;
                tables.extremes.remove(slot(f, deque.front));
                deque.front++;
                deque.size--;
                if (deque.size > 0) {
                    byte[] entry = tables.extremes.get(slot(f, deque.front));
                    deque.frontSeq = entrySeq(entry);
                    deque.frontValue = entryValue(entry);
                } else {
                    deque.frontValue = null;
                    deque.backValue = null;
                }
            }
            case DISTINCT_COUNT -> {
                Object v = values[feature.column];
                if (v == null) return;
                String key = valueKey(f, v);
                long count = tables.counts.get(key);
                if (count == 1) {
                    tables.counts.remove(key);
                    ((Distinct) aggregates[f]).values--;
                } else {
                    tables.counts.put(key, count - 1);
                }
            }
            case LAST -> { }  // the newest row with a value leaves after every older one: values() checks it is inside
            default -> throw new IllegalStateException(feature.agg.toString());
        }
    }

    private static long entrySeq(byte[] entry) {
        return rowTime(entry);  // the same big-endian long at the front
    }

    private static Object entryValue(byte[] entry) {
        return decode(entry, in -> {
            in.readLong();
            return readValue(in);
        });
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
                case MIN, MAX -> ((Extremes) agg).size == 0 ? null : ((Extremes) agg).frontValue;
                case DISTINCT_COUNT -> (long) ((Distinct) agg).values;
                case LAST -> ((Latest) agg).seq >= starts[feature.window] ? ((Latest) agg).value : null;
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
     * The newest row with a value (sequence number, -1 before any) and that value. Rows leave in
     * sequence order, so when that row has left a window no row with a value is left in it: O(1)
     * per row, however many nulls follow.
     */
    static final class Latest {
        long seq = -1;
        Object value;
    }

    /**
     * A monotonic deque of (sequence number, value) in {@link WindowTables#extremes} at positions
     * {@code [front, front + size)}; the front and back values are kept here, so that a row
     * entering or a window being read costs no table read.
     */
    static final class Extremes {
        long front;
        int size;
        long frontSeq;
        Object frontValue;
        Object backValue;
    }

    /** Number of distinct values in a multiset of {@link WindowTables#counts}. */
    static final class Distinct {
        long values;
    }

    // ---- serialization (Flink state and checkpoints; see KeyWindowsSerializer) ----

    /**
     * Leads the state so that state of another layout is refused, not misread: -2 kept the rows in
     * this object, the layout before nulls (no format number) began with the pending count, never negative.
     */
    private static final int FORMAT = -3;
    private static final byte NULL = 0, STRING = 1, LONG = 2, DOUBLE = 3, INT = 4, BOOLEAN = 5;
    private static final byte NO_AGG = 0, LONG_SUM = 1, EXACT = 2, EXTREMES = 3, DISTINCT = 4, LATEST = 5;

    public void write(DataOutput out) throws IOException {
        out.writeInt(FORMAT);
        out.writeInt(pendingTimes);
        out.writeLong(firstSeq);
        out.writeInt(size);
        out.writeLong(newest);
        out.writeInt(starts.length);
        for (int w = 0; w < starts.length; w++) {
            out.writeLong(starts[w]);
            out.writeLong(startTimes[w]);
        }
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
            } else if (agg instanceof Extremes deque) {
                out.writeByte(EXTREMES);
                out.writeLong(deque.front);
                out.writeInt(deque.size);
                out.writeLong(deque.frontSeq);
                writeValue(out, deque.frontValue);
                writeValue(out, deque.backValue);
            } else if (agg instanceof Distinct distinct) {
                out.writeByte(DISTINCT);
                out.writeLong(distinct.values);
            } else {
                out.writeByte(LATEST);
                out.writeLong(((Latest) agg).seq);
                writeValue(out, ((Latest) agg).value);
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
        long firstSeq = in.readLong();
        int size = in.readInt();
        long newest = in.readLong();
        int windows = in.readInt();
        long[] starts = new long[windows];
        long[] startTimes = new long[windows];
        for (int w = 0; w < windows; w++) {
            starts[w] = in.readLong();
            startTimes[w] = in.readLong();
        }
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
                case EXTREMES -> {
                    Extremes deque = new Extremes();
                    deque.front = in.readLong();
                    deque.size = in.readInt();
                    deque.frontSeq = in.readLong();
                    deque.frontValue = readValue(in);
                    deque.backValue = readValue(in);
                    yield deque;
                }
                case DISTINCT -> {
                    Distinct distinct = new Distinct();
                    distinct.values = in.readLong();
                    yield distinct;
                }
                case LATEST -> {
                    Latest latest = new Latest();
                    latest.seq = in.readLong();
                    latest.value = readValue(in);
                    yield latest;
                }
                default -> throw new IOException("window state: unknown aggregate tag " + tag);
            };
        }
        KeyWindows windowsState = new KeyWindows(starts, startTimes, aggregates);
        windowsState.pendingTimes = pendingTimes;
        windowsState.firstSeq = firstSeq;
        windowsState.size = size;
        windowsState.newest = newest;
        return windowsState;
    }

    /**
     * A deep copy of this object (not of the tables): the heap state backend copies an entry that
     * a running snapshot still holds before the function may change it. Values are immutable.
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
            } else if (agg instanceof Extremes deque) {
                Extremes c = new Extremes();
                c.front = deque.front;
                c.size = deque.size;
                c.frontSeq = deque.frontSeq;
                c.frontValue = deque.frontValue;
                c.backValue = deque.backValue;
                aggregatesCopy[f] = c;
            } else if (agg instanceof Distinct distinct) {
                Distinct c = new Distinct();
                c.values = distinct.values;
                aggregatesCopy[f] = c;
            } else if (agg instanceof Latest latest) {
                Latest c = new Latest();
                c.seq = latest.seq;
                c.value = latest.value;
                aggregatesCopy[f] = c;
            }
        }
        KeyWindows c = new KeyWindows(starts.clone(), startTimes.clone(), aggregatesCopy);
        c.pendingTimes = pendingTimes;
        c.firstSeq = firstSeq;
        c.size = size;
        c.newest = newest;
        return c;
    }

    private interface Writing {
        void to(DataOutput out) throws IOException;
    }

    private interface Reading<T> {
        T from(DataInput in) throws IOException;
    }

    private static byte[] encode(Writing writing) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream(64);
        try {
            writing.to(new DataOutputStream(bytes));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return bytes.toByteArray();
    }

    private static <T> T decode(byte[] bytes, Reading<T> reading) {
        try {
            return reading.from(new DataInputStream(new ByteArrayInputStream(bytes)));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
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
