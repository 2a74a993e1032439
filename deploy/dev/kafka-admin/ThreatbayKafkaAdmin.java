// Creates topics and ACL bindings on the secured dev Kafka (deploy/dev/services --secure).
//
// Run as a single source file (JDK 11+, no build step), with the cached Kafka jars:
//   java -cp '<cache>/kafka-<v>/libs/*' ThreatbayKafkaAdmin.java ADMIN_CLIENT_PROPERTIES SPEC_FILE
// SPEC_FILE lines (blank lines and # comments ignored):
//   topic NAME PARTITIONS REPLICATION_FACTOR [config=value ...]
//   acl   PRINCIPAL OPERATION RESOURCE_TYPE PATTERN_TYPE NAME      (always ALLOW, any host)
// Existing topics and existing ACL bindings are left as they are (both steps are idempotent).

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class ThreatbayKafkaAdmin {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: ThreatbayKafkaAdmin ADMIN_CLIENT_PROPERTIES SPEC_FILE");
            System.exit(2);
        }
        Properties props = new Properties();
        try (var in = Files.newInputStream(Path.of(args[0]))) {
            props.load(in);
        }
        List<NewTopic> topics = new ArrayList<>();
        List<AclBinding> acls = new ArrayList<>();
        for (String raw : Files.readAllLines(Path.of(args[1]))) {
            String line = raw.strip();
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            String[] f = line.split("\\s+");
            switch (f[0]) {
                case "topic" -> {
                    Map<String, String> configs = new HashMap<>();
                    for (int i = 4; i < f.length; i++) {
                        String[] kv = f[i].split("=", 2);
                        configs.put(kv[0], kv[1]);
                    }
                    topics.add(new NewTopic(f[1], Integer.parseInt(f[2]), Short.parseShort(f[3]))
                            .configs(configs));
                }
                case "acl" -> {
                    if (f.length != 6) {
                        throw new IllegalArgumentException("acl line needs 6 fields: " + line);
                    }
                    acls.add(new AclBinding(
                            new ResourcePattern(ResourceType.fromString(f[3]), f[5],
                                    PatternType.fromString(f[4])),
                            new AccessControlEntry(f[1], "*", AclOperation.fromString(f[2]),
                                    AclPermissionType.ALLOW)));
                }
                default -> throw new IllegalArgumentException("bad spec line: " + line);
            }
        }
        try (Admin admin = Admin.create(props)) {
            int created = 0;
            int existed = 0;
            for (var entry : admin.createTopics(topics).values().entrySet()) {
                try {
                    entry.getValue().get();
                    created++;
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw new RuntimeException("creating topic " + entry.getKey(), e.getCause());
                    }
                    existed++;
                }
            }
            if (!acls.isEmpty()) {
                admin.createAcls(acls).all().get();
            }
            System.out.printf("topics: %d created, %d already there; ACL bindings applied: %d%n",
                    created, existed, acls.size());
        }
    }
}
