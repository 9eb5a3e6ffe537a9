// A client as a user of ZooKeeper's own Java client writes it: one session on the connection
// string it is given, a sequential znode created every 20 ms, a new session when the old one
// expired. Runs until its standard input closes, then reads every acknowledged write back and
// writes one line of figures to RESULT_FILE:
//
//   attempts=N acked=N failed=N lost=N expired=N longest_gap_ms=N
//
// Usage: java -cp "$ZOOKEEPER_DIST/lib/*:DIR" Writer CONNECT_STRING SESSION_TIMEOUT_MS ROOT RESULT_FILE
// (ROOT: a fresh path such as /bench-java-1, created by the writer)

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

public final class Writer {
  private static final class Ack {
    final String path;
    final long seq;
    final long endNanos;

    Ack(String path, long seq, long endNanos) {
      this.path = path;
      this.seq = seq;
      this.endNanos = endNanos;
    }
  }

  private final String connect;
  private final int sessionTimeoutMs;
  private ZooKeeper zk;
  private int expired;

  private Writer(String connect, int sessionTimeoutMs) {
    this.connect = connect;
    this.sessionTimeoutMs = sessionTimeoutMs;
  }

  /** Opens a session and waits (up to the session timeout) until it is connected. */
  private void open() throws IOException, InterruptedException {
    CountDownLatch connected = new CountDownLatch(1);
    zk = new ZooKeeper(connect, sessionTimeoutMs, event -> {
      if (event.getState() == Watcher.Event.KeeperState.SyncConnected) {
        connected.countDown();
      }
    });
    connected.await(sessionTimeoutMs, TimeUnit.MILLISECONDS);
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 4) {
      System.err.println("usage: Writer CONNECT_STRING SESSION_TIMEOUT_MS ROOT RESULT_FILE");
      System.exit(2);
    }
    Writer w = new Writer(args[0], Integer.parseInt(args[1]));
    String root = args[2];
    w.open();
    w.zk.create(root, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);

    AtomicBoolean stop = new AtomicBoolean(false);
    Thread stdin = new Thread(() -> {
      try {
        InputStream in = System.in;
        while (in.read() >= 0) {
          // wait for end of input
        }
      } catch (IOException e) {
        // treated as end of input
      }
      stop.set(true);
    });
    stdin.setDaemon(true);
    stdin.start();

    List<Ack> acks = new ArrayList<>();
    long attempts = 0;
    long failed = 0;
    long seq = 0;
    while (!stop.get()) {
      seq++;
      attempts++;
      boolean ok = false;
      try {
        String path = w.zk.create(root + "/w-", Long.toString(seq).getBytes(StandardCharsets.UTF_8),
            ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_SEQUENTIAL);
        acks.add(new Ack(path, seq, System.nanoTime()));
        ok = true;
      } catch (KeeperException.SessionExpiredException e) {
        failed++;
        w.expired++;
        w.zk.close();
        w.open();
      } catch (KeeperException e) {
        failed++;
      }
      Thread.sleep(ok ? 20 : 50);
    }

    // Every acknowledged write must be there with the data written; a session that cannot
    // read them back within a minute counts every unread one as lost.
    long lost = 0;
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    for (Ack a : acks) {
      while (true) {
        try {
          byte[] data = w.zk.getData(a.path, false, null);
          if (!Long.toString(a.seq).equals(new String(data, StandardCharsets.UTF_8))) {
            lost++;
          }
          break;
        } catch (KeeperException.NoNodeException e) {
          lost++;
          break;
        } catch (KeeperException.SessionExpiredException e) {
          w.zk.close();
          w.open();
        } catch (KeeperException e) {
          if (System.nanoTime() > deadline) {
            lost++;
            break;
          }
          Thread.sleep(100);
        }
      }
    }
    long longestGap = 0;
    for (int i = 1; i < acks.size(); i++) {
      longestGap = Math.max(longestGap, acks.get(i).endNanos - acks.get(i - 1).endNanos);
    }
    String result = String.format("attempts=%d acked=%d failed=%d lost=%d expired=%d longest_gap_ms=%d%n",
        attempts, acks.size(), failed, lost, w.expired, TimeUnit.NANOSECONDS.toMillis(longestGap));
    Files.write(Paths.get(args[3]), result.getBytes(StandardCharsets.UTF_8));
    w.zk.close();
  }
}
