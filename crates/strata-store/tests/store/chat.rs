//! The chat repository on both dialects: gap-free per-room ids, de-duplication by client id,
//! membership and paging.

use strata_store::testing;
use strata_store::{ChatRoomKind, Store, UserRole};

use crate::harness::{both_dialects, migrated};

both_dialects!(
    messages_get_gap_free_ids_per_room,
    client_ids_deduplicate,
    unknown_rooms_take_no_messages,
    membership_is_recorded_once,
    concurrent_posts_stay_gap_free,
    batches_store_in_order_and_deduplicate,
    concurrent_batches_racing_on_client_ids_store_each_once,
    support_rooms_list_unread_per_agent_and_markers_only_move_forward,
);

async fn messages_get_gap_free_ids_per_room(store: &Store) {
    migrated(store).await;
    let chat = store.chat();
    chat.join("support-1", ChatRoomKind::Support, 1)
        .await
        .unwrap();
    chat.join("lobby-a", ChatRoomKind::Lobby, 2).await.unwrap();
    for i in 1..=5 {
        let posted = chat
            .post("support-1", 1, &format!("c{i}"), &format!("hello {i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(posted.message.seq, i);
        assert!(!posted.duplicate);
    }
    let lobby = chat.post("lobby-a", 2, "c1", "hi").await.unwrap().unwrap();
    assert_eq!(lobby.message.seq, 1, "ids are per room");
    assert_eq!(chat.last_seq("support-1").await.unwrap(), Some(5));
    assert_eq!(chat.last_seq("lobby-b").await.unwrap(), None);

    let page = chat.after("support-1", 2, 2).await.unwrap();
    let seqs: Vec<i64> = page.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [3, 4]);
    assert_eq!(page[0].body, "hello 3");
    assert_eq!(page[0].sender_id, 1);
    let between = chat.between("support-1", 1, 5, 100).await.unwrap();
    assert_eq!(between.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3, 4]);
    assert!(chat.after("support-1", 5, 10).await.unwrap().is_empty());
}

async fn client_ids_deduplicate(store: &Store) {
    migrated(store).await;
    let chat = store.chat();
    chat.join("support-1", ChatRoomKind::Support, 1)
        .await
        .unwrap();
    let first = chat
        .post("support-1", 1, "x", "one")
        .await
        .unwrap()
        .unwrap();
    let again = chat
        .post("support-1", 1, "x", "two")
        .await
        .unwrap()
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, first.message, "the first message is kept");
    // Another sender may use the same client id.
    let other = chat
        .post("support-1", 7, "x", "three")
        .await
        .unwrap()
        .unwrap();
    assert!(!other.duplicate);
    assert_eq!(other.message.seq, 2, "the duplicate used no id");
    assert_eq!(chat.last_seq("support-1").await.unwrap(), Some(2));
}

async fn unknown_rooms_take_no_messages(store: &Store) {
    migrated(store).await;
    assert_eq!(
        store.chat().post("lobby-x", 1, "a", "b").await.unwrap(),
        None
    );
    assert!(
        store
            .chat()
            .after("lobby-x", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn membership_is_recorded_once(store: &Store) {
    migrated(store).await;
    let chat = store.chat();
    // True only when the roster changed.
    assert!(
        chat.join("support-3", ChatRoomKind::Support, 3)
            .await
            .unwrap()
    );
    assert!(
        !chat
            .join("support-3", ChatRoomKind::Support, 3)
            .await
            .unwrap()
    );
    assert!(
        chat.join("support-3", ChatRoomKind::Support, 9)
            .await
            .unwrap()
    );
    assert_eq!(chat.members("support-3").await.unwrap(), [3, 9]);
    assert!(chat.is_member("support-3", 9).await.unwrap());
    assert!(!chat.is_member("support-3", 4).await.unwrap());
}

async fn concurrent_posts_stay_gap_free(store: &Store) {
    migrated(store).await;
    store
        .chat()
        .join("lobby-busy", ChatRoomKind::Lobby, 1)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for sender in 0..8_i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                // Every message is sent twice: the second must be a duplicate.
                for _ in 0..2 {
                    store
                        .chat()
                        .post("lobby-busy", sender, &format!("m{i}"), "x")
                        .await
                        .unwrap()
                        .unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let all = store.chat().after("lobby-busy", 0, 1000).await.unwrap();
    let seqs: Vec<i64> = all.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
}

async fn batches_store_in_order_and_deduplicate(store: &Store) {
    migrated(store).await;
    let chat = store.chat();
    chat.join("lobby-a", ChatRoomKind::Lobby, 1).await.unwrap();
    chat.join("lobby-b", ChatRoomKind::Lobby, 1).await.unwrap();
    chat.post("lobby-a", 1, "old", "before")
        .await
        .unwrap()
        .unwrap();
    let posted = chat
        .post_many(&[
            ("lobby-a", 1, "a1", "one"),
            ("lobby-b", 2, "b1", "two"),
            ("lobby-x", 1, "x1", "nowhere"),
            ("lobby-a", 1, "old", "again"),
            ("lobby-a", 2, "a2", "three"),
            ("lobby-a", 1, "a1", "one again"),
        ])
        .await
        .unwrap();
    let answer = |i: usize| posted[i].clone().unwrap();
    assert_eq!((answer(0).message.seq, answer(0).duplicate), (2, false));
    assert_eq!((answer(1).message.seq, answer(1).duplicate), (1, false));
    assert_eq!(posted[2], None, "unknown rooms take no messages");
    assert!(answer(3).duplicate, "stored before the batch");
    assert_eq!(answer(3).message.body, "before");
    assert_eq!((answer(4).message.seq, answer(4).duplicate), (3, false));
    assert!(answer(5).duplicate, "earlier in the same batch");
    assert_eq!(answer(5).message, answer(0).message);
    let stored = chat.after("lobby-a", 0, 10).await.unwrap();
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        stored[1],
        answer(0).message,
        "what the batch answers is what it stored"
    );
    assert_eq!(chat.last_seq("lobby-a").await.unwrap(), Some(3));
    assert_eq!(chat.last_seq("lobby-b").await.unwrap(), Some(1));
    assert!(chat.post_many(&[]).await.unwrap().is_empty());
}

/// Batches from several writers at once, over the same two rooms in both orders, where every
/// writer posts the same client ids: each client id is stored once, every writer is answered
/// with that stored message, and each room's ids stay gap-free.
async fn concurrent_batches_racing_on_client_ids_store_each_once(store: &Store) {
    migrated(store).await;
    let chat = store.chat();
    chat.join("lobby-x", ChatRoomKind::Lobby, 1).await.unwrap();
    chat.join("lobby-y", ChatRoomKind::Lobby, 1).await.unwrap();
    let mut tasks = Vec::new();
    for writer in 0..4_usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..15 {
                let key = format!("k{i}");
                let mut batch = vec![
                    ("lobby-x", 7, key.as_str(), "x"),
                    ("lobby-y", 7, key.as_str(), "y"),
                ];
                if writer % 2 == 1 {
                    batch.reverse();
                }
                let posted = store.chat().post_many(&batch).await.unwrap();
                for (post, answer) in batch.iter().zip(posted) {
                    let answer = answer.unwrap();
                    assert_eq!(answer.message.room_id, post.0);
                    assert_eq!(answer.message.client_id, post.2);
                    answers.push(answer.message);
                }
            }
            answers
        }));
    }
    let mut answered = Vec::new();
    for task in tasks {
        answered.extend(task.await.unwrap());
    }
    for room in ["lobby-x", "lobby-y"] {
        let stored = chat.after(room, 0, 1000).await.unwrap();
        let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=15).collect::<Vec<_>>(),
            "{room}: one message per client id"
        );
        let mut keys: Vec<&str> = stored.iter().map(|m| m.client_id.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 15, "{room}: client ids stored once");
        for message in answered.iter().filter(|m| m.room_id == room) {
            assert!(
                stored.contains(message),
                "answered {message:?}, which is not stored"
            );
        }
    }
}

/// The agents' list: support rooms only, most recently active first, each with its
/// customer's name, newest message and the agent's own unread count (others' messages above
/// the agent's marker); a marker moves only forward and never past the room's newest id.
async fn support_rooms_list_unread_per_agent_and_markers_only_move_forward(store: &Store) {
    migrated(store).await;
    for (id, role) in [
        (3, UserRole::Customer),
        (4, UserRole::Customer),
        (50, UserRole::Support),
        (60, UserRole::Admin),
    ] {
        testing::account(store, id, role).await.unwrap();
    }
    let chat = store.chat();
    chat.join("support-3", ChatRoomKind::Support, 3)
        .await
        .unwrap();
    chat.join("support-4", ChatRoomKind::Support, 4)
        .await
        .unwrap();
    chat.join("support-5", ChatRoomKind::Support, 50)
        .await
        .unwrap();
    chat.join("lobby-staff", ChatRoomKind::Lobby, 50)
        .await
        .unwrap();
    chat.post("lobby-staff", 50, "l1", "not listed")
        .await
        .unwrap();
    for i in 0..3 {
        chat.post("support-4", 4, &format!("a{i}"), "from four")
            .await
            .unwrap();
    }
    for i in 0..2 {
        chat.post("support-3", 3, &format!("b{i}"), "from three")
            .await
            .unwrap();
    }
    // The agent's own message is never unread to them.
    chat.post("support-3", 50, "c0", "agent answers")
        .await
        .unwrap();

    let rooms = chat.support_rooms(50, 100).await.unwrap();
    let ids: Vec<&str> = rooms.iter().map(|r| r.room_id.as_str()).collect();
    // support-3 has the newest message (or ties with support-4 and wins on id); support-5 none.
    assert_eq!(ids.last(), Some(&"support-5"), "{rooms:?}");
    assert_eq!(ids.len(), 3, "{rooms:?}");
    let room = |id: &str| rooms.iter().find(|r| r.room_id == id).unwrap().clone();
    let three = room("support-3");
    assert_eq!(three.customer_name, "User 3");
    assert_eq!(three.unread, 2);
    let last = three.last.unwrap();
    assert_eq!((last.seq, last.sender_id), (3, 50));
    assert_eq!(last.sender_name, "User 50");
    assert_eq!(last.body, "agent answers");
    assert_eq!(room("support-4").unread, 3);
    let five = room("support-5");
    assert_eq!(
        (five.unread, five.last, five.customer_name.as_str()),
        (0, None, "")
    );

    // Markers: forward only, never past the newest message, per agent.
    assert!(chat.mark_read("support-4", 50, 2).await.unwrap());
    assert!(!chat.mark_read("support-4", 50, 1).await.unwrap());
    assert!(!chat.mark_read("support-4", 50, 2).await.unwrap());
    assert!(!chat.mark_read("support-4", 50, 4).await.unwrap());
    assert!(!chat.mark_read("support-9", 50, 1).await.unwrap());
    assert_eq!(
        chat.support_rooms(50, 100)
            .await
            .unwrap()
            .iter()
            .find(|r| r.room_id == "support-4")
            .unwrap()
            .unread,
        1
    );
    // The admin has read nothing: the agent's own message counts for them.
    let admin = chat.support_rooms(60, 100).await.unwrap();
    let unread: Vec<(String, i64)> = admin
        .iter()
        .map(|r| (r.room_id.clone(), r.unread))
        .collect();
    assert!(unread.contains(&("support-3".into(), 3)), "{unread:?}");
    assert!(unread.contains(&("support-4".into(), 3)), "{unread:?}");
    assert_eq!(chat.support_rooms(60, 1).await.unwrap().len(), 1);
}
