package dev.tandem.udf;

import java.util.HashMap;
import java.util.Map;

/**
 * Where one key's {@link KeyWindows} keep what grows with its events, one map each, so a state
 * backend holds them entry by entry: with RocksDB a row is read or written alone, never the
 * key's whole window, and the heap stays flat however long the windows are.
 *
 * <p>{@link FlinkWindowFeatures} backs the tables with Flink map state ({@code MapView}s);
 * {@link #inMemory} backs them with hash maps (tests, and anything engine-free).
 */
public final class WindowTables {
    /** One map of a key's state. */
    public interface Table<K, V> {
        V get(K key);

        void put(K key, V value);

        void remove(K key);
    }

    /** Processed rows still inside the widest window: sequence number to event time and kept values. */
    public final Table<Long, byte[]> rows;
    /** Rows waiting for the watermark: event time to the rows at that time, in arrival order. */
    public final Table<Long, byte[]> pending;
    /** Min/max deques: feature and position ({@link KeyWindows#slot}) to a row's sequence number and value. */
    public final Table<Long, byte[]> extremes;
    /** Distinct-count multisets: feature and value ({@link KeyWindows#valueKey}) to the value's count. */
    public final Table<String, Long> counts;

    public WindowTables(Table<Long, byte[]> rows, Table<Long, byte[]> pending, Table<Long, byte[]> extremes,
                        Table<String, Long> counts) {
        this.rows = rows;
        this.pending = pending;
        this.extremes = extremes;
        this.counts = counts;
    }

    /** Tables in hash maps. */
    public static WindowTables inMemory() {
        return new WindowTables(new InMemory<>(), new InMemory<>(), new InMemory<>(), new InMemory<>());
    }

    /** An independent copy of in-memory tables (values are never changed in place, so they are shared). */
    public WindowTables copy() {
        return new WindowTables(((InMemory<Long, byte[]>) rows).copy(), ((InMemory<Long, byte[]>) pending).copy(),
                ((InMemory<Long, byte[]>) extremes).copy(), ((InMemory<String, Long>) counts).copy());
    }

    /** Number of entries of in-memory tables (tests: what a key keeps). */
    public int size() {
        return ((InMemory<?, ?>) rows).map.size() + ((InMemory<?, ?>) pending).map.size()
                + ((InMemory<?, ?>) extremes).map.size() + ((InMemory<?, ?>) counts).map.size();
    }

    private static final class InMemory<K, V> implements Table<K, V> {
        final Map<K, V> map = new HashMap<>();

        @Override
        public V get(K key) {
            return map.get(key);
        }

        @Override
        public void put(K key, V value) {
            map.put(key, value);
        }

        @Override
        public void remove(K key) {
            map.remove(key);
        }

        InMemory<K, V> copy() {
            InMemory<K, V> c = new InMemory<>();
            c.map.putAll(map);
            return c;
        }
    }
}
