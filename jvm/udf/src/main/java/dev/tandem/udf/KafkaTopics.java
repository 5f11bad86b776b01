package dev.tandem.udf;

import java.util.Arrays;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.apache.flink.kafka.shaded.org.apache.kafka.clients.admin.Admin;

/**
 * A look at a Kafka cluster before a job starts (called from Python through py4j), with the Kafka client
 * that Flink's SQL connector jar shades: a missing topic or a silent broker is one clear error at start,
 * not a Flink job failing minutes later on a producer timeout.
 */
public final class KafkaTopics {
    private KafkaTopics() {}

    /** The names in {@code topics} the cluster at {@code bootstrap} does not have; throws if it does not answer. */
    public static String[] missing(String bootstrap, String[] topics, int timeoutMs) throws Exception {
        return missing(bootstrap, topics, timeoutMs, Map.of());
    }

    /** As above, with the project's Kafka client properties (credentials, TLS) set on the admin client. */
    public static String[] missing(String bootstrap, String[] topics, int timeoutMs, Map<String, String> client)
            throws Exception {
        Properties props = new Properties();
        props.putAll(client);
        props.put("bootstrap.servers", bootstrap);
        props.put("request.timeout.ms", Integer.toString(timeoutMs));
        props.put("default.api.timeout.ms", Integer.toString(timeoutMs));
        try (Admin admin = Admin.create(props)) {
            Set<String> names = admin.listTopics().names().get(timeoutMs, TimeUnit.MILLISECONDS);
            return Arrays.stream(topics).filter(t -> !names.contains(t)).toArray(String[]::new);
        }
    }
}
