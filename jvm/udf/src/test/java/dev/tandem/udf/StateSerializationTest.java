package dev.tandem.udf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.util.List;
import org.apache.flink.api.common.serialization.SerializerConfigImpl;
import org.apache.flink.api.java.typeutils.runtime.kryo.KryoSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.junit.jupiter.api.Test;

/**
 * The accumulator survives the engines' state serialization exactly: Java
 * serialization (Spark's buffer encoder) and Kryo (Flink's RAW state and
 * checkpoints), including the BigInteger overflow part, and keeps working after.
 * So does the window operator's state ({@link KeyWindowsSerializer}), nulls and
 * booleans included.
 */
class StateSerializationTest {

    private static ExactSum sample() {
        ExactSum s = new ExactSum();
        for (double x : new double[] {1e16, 1, 1, 0.1, Double.MAX_VALUE, Double.MAX_VALUE, 5e-324}) s.add(x);
        return s;  // overflowed: Infinity, held exactly
    }

    private static void assertSameAfterUse(ExactSum original, ExactSum copy) {
        assertEquals(original.value(), copy.value());
        assertEquals(original.count(), copy.count());
        for (ExactSum s : new ExactSum[] {original, copy}) {
            s.remove(Double.MAX_VALUE);
            s.remove(Double.MAX_VALUE);
            s.remove(1e16);
        }
        assertEquals(2.1000000000000001, copy.value());
        assertEquals(original.value(), copy.value());
    }

    @Test
    void javaSerializationRoundTrip() throws Exception {
        ExactSum s = sample();
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
            out.writeObject(s);
        }
        ExactSum copy;
        try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(bytes.toByteArray()))) {
            copy = (ExactSum) in.readObject();
        }
        assertSameAfterUse(s, copy);
    }

    @Test
    void flinkKryoRoundTrip() throws Exception {
        KryoSerializer<ExactSum> serializer = new KryoSerializer<>(ExactSum.class, new SerializerConfigImpl());
        ExactSum s = sample();
        DataOutputSerializer out = new DataOutputSerializer(64);
        serializer.serialize(s, out);
        ExactSum copy = serializer.deserialize(new DataInputDeserializer(out.getCopyOfBuffer()));
        assertSameAfterUse(s, copy);
        assertSameAfterUse(sample(), serializer.copy(sample()));
    }

    private static final String WINDOW_SPEC = "order=id;n=count/10;sum=sum/10/flag;avg=mean/10/amount;"
            + "max=max/10/amount;paids=distinct_count/10/paid;paid=last/10/paid;amount=last/10/amount";
    private static final WindowSpec SPEC = WindowSpec.parse(WINDOW_SPEC, List.of("id", "amount", "flag", "paid"),
            List.of(WindowSpec.Kind.STRING, WindowSpec.Kind.DOUBLE, WindowSpec.Kind.LONG, WindowSpec.Kind.BOOLEAN));

    private static KeyWindows serializerRoundTrip(KeyWindows windows) throws IOException {
        KeyWindowsSerializer serializer = new KeyWindowsSerializer();
        DataOutputSerializer out = new DataOutputSerializer(64);
        serializer.serialize(windows, out);
        return serializer.deserialize(new DataInputDeserializer(out.getCopyOfBuffer()));
    }

    /**
     * Processed rows and rows still waiting, with null values and booleans, and aggregates whose
     * window holds only nulls: the restored state gives the same rows as the original from then on.
     */
    @Test
    void windowStateWithNullsAndBooleansRoundTrips() throws IOException {
        KeyWindows original = KeyWindows.create(SPEC);
        WindowTables originalTables = WindowTables.inMemory();
        original.buffer(originalTables, 1, new Object[] {"a", 2.5, 3L, true});
        original.buffer(originalTables, 2, new Object[] {"b", null, null, false});
        original.buffer(originalTables, 15, new Object[] {"c", null, null, null});  // at 15 the window holds no value
        original.fire(SPEC, originalTables, 15);
        original.buffer(originalTables, 16, new Object[] {"d", null, 4L, null});  // waiting
        original.buffer(originalTables, 16, new Object[] {"e", 1.0, null, false});
        KeyWindows restored = serializerRoundTrip(original);
        WindowTables restoredTables = originalTables.copy();  // the tables are map states of their own
        for (int k = 0; k < 2; k++) {
            KeyWindows w = k == 0 ? original : restored;
            WindowTables t = k == 0 ? originalTables : restoredTables;
            w.buffer(t, 20, new Object[] {"f", null, null, null});
            w.buffer(t, 40, new Object[] {"g", null, null, true});
        }
        for (long t : new long[] {16, 20, 40}) {
            List<Object[]> a = original.fire(SPEC, originalTables, t), b = restored.fire(SPEC, restoredTables, t);
            assertEquals(a.size(), b.size());
            for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), b.get(i), "at " + t);
        }
        restored = serializerRoundTrip(original);
        restoredTables = originalTables.copy();
        original.buffer(originalTables, 41, new Object[] {"h", null, null, null});
        restored.buffer(restoredTables, 41, new Object[] {"h", null, null, null});
        Object[] h = restored.fire(SPEC, restoredTables, 41).get(0);
        assertArrayEquals(original.fire(SPEC, originalTables, 41).get(0), h);
        // h: window [31, 41] holds g (paid true) and h; no amount or flag.
        assertArrayEquals(new Object[] {"h", null, null, null, 2L, null, null, null, 1L, true, null}, h);
    }

    @Test
    void windowStateOfAnotherLayoutIsRefusedNotMisread() throws IOException {
        DataOutputSerializer out = new DataOutputSerializer(16);
        out.writeInt(0);  // the layout before nulls began with the number of pending times
        out.writeLong(0);
        IOException e = assertThrows(IOException.class,
                () -> new KeyWindowsSerializer().deserialize(new DataInputDeserializer(out.getCopyOfBuffer())));
        assertTrue(e.getMessage().contains("another layout"), e.getMessage());
    }
}
