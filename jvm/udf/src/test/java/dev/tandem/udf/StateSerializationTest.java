package dev.tandem.udf;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import org.apache.flink.api.common.serialization.SerializerConfigImpl;
import org.apache.flink.api.java.typeutils.runtime.kryo.KryoSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.junit.jupiter.api.Test;

/**
 * The accumulator survives the engines' state serialization exactly: Java
 * serialization (Spark's buffer encoder) and Kryo (Flink's RAW state and
 * checkpoints), including the BigInteger overflow part, and keeps working after.
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
}
