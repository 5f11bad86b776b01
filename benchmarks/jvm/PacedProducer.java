import java.io.BufferedWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Benchmark driver, not product code: replays a JSON Lines file into a Kafka topic at a
 * steady rate and logs, per line, when it was sent and when the broker acknowledged it.
 *
 * <p>Line k is sent at {@code START_MS + k / RATE} (wall clock; late sends go at once and
 * are logged as sent). Each line's {@code "event_time": <epoch ms>} becomes
 * {@code START_MS + floor((event_time - BASE_MS) * SCALE)}, so event time tracks the wall clock, as it
 * would for a live producer (benchmarks/stream_load.py's {@code sent_time}, in the same doubles);
 * records without a numeric event time pass unchanged. No key, one partition expected:
 * the topic's order is the file's order. Run with the JDK source launcher (no build step):
 *
 * <pre>java -cp 'jvm/jars/kafka/*' PacedProducer.java BOOTSTRAP TOPIC FILE RATE START_MS BASE_MS SCALE LOG</pre>
 *
 * LOG gets one line per record: {@code k send_us ack_us} (epoch microseconds, the same
 * clock Python's {@code time.time_ns()} reads).
 */
public final class PacedProducer {
    private static final Pattern EVENT_TIME = Pattern.compile("\"event_time\": (-?\\d+)([,}])");

    private static long nowMicros() {
        Instant t = Instant.now();
        return t.getEpochSecond() * 1_000_000L + t.getNano() / 1_000;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        List<String> lines = Files.readAllLines(Path.of(args[2]), StandardCharsets.UTF_8);
        double rate = Double.parseDouble(args[3]);
        long startMs = Long.parseLong(args[4]), baseMs = Long.parseLong(args[5]);
        double scale = Double.parseDouble(args[6]);
        Path log = Path.of(args[7]);

        byte[][] payloads = new byte[lines.size()][];
        for (int k = 0; k < payloads.length; k++) {
            Matcher m = EVENT_TIME.matcher(lines.get(k));
            String line = m.find()
                    ? lines.get(k).substring(0, m.start(1))
                      + (startMs + (long) Math.floor((Long.parseLong(m.group(1)) - baseMs) * scale))
                      + lines.get(k).substring(m.end(1))
                    : lines.get(k);
            payloads[k] = line.getBytes(StandardCharsets.UTF_8);
        }
        long[] sent = new long[payloads.length], acked = new long[payloads.length];

        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("acks", "all");
        props.put("linger.ms", "0");
        props.put("enable.idempotence", "true");
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            producer.partitionsFor(topic);  // metadata before the clock starts
            long startNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(startMs - System.currentTimeMillis());
            double nanosPerRecord = 1e9 / rate;
            for (int k = 0; k < payloads.length; k++) {
                long due = startNanos + (long) (k * nanosPerRecord);
                long wait;
                while ((wait = due - System.nanoTime()) > 0) {
                    LockSupport.parkNanos(wait);
                }
                final int i = k;
                sent[i] = nowMicros();
                producer.send(new ProducerRecord<>(topic, payloads[i]), (meta, error) -> {
                    if (error != null) {
                        System.err.println("send " + i + " failed: " + error);
                        System.exit(3);
                    }
                    acked[i] = nowMicros();
                });
            }
            producer.flush();
        }
        try (BufferedWriter out = Files.newBufferedWriter(log, StandardCharsets.UTF_8)) {
            for (int k = 0; k < payloads.length; k++) {
                out.write(k + " " + sent[k] + " " + acked[k] + "\n");
            }
        }
    }
}
